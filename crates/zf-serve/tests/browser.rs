//! The explorer in a real browser: headless Chromium (Debian's package; `CHROMIUM` names
//! another binary) driven over the DevTools protocol. Upload an image, click a channel, and
//! the projection the page shows is the library's projection of that unit, pixel for pixel;
//! the top-9 grid appears; the arrow keys move between channels and layers and the address
//! states the view, which a reload restores; a channel silent on the image is said to be; the
//! console has no error.
//!
//! Chromium is not part of the Rust toolchain, so the test is `#[ignore]`d in a plain
//! `cargo test`; `.ci/run` installs Chromium and runs it with `--ignored`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};

/// Waits (bounded) until `js` evaluates to true.
fn wait_until(tab: &Tab, js: &str, what: &str) {
    for _ in 0..300 {
        let v = tab.evaluate(js, false).unwrap().value;
        if v == Some(serde_json::Value::Bool(true)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what} ({js})");
}

fn eval(tab: &Tab, js: &str) -> serde_json::Value {
    tab.evaluate(js, false).unwrap().value.unwrap_or(serde_json::Value::Null)
}

/// The pixels of `#projection` as the page decoded them, read back through a canvas.
fn shown_projection(tab: &Tab) -> image::RgbImage {
    let v = eval(
        tab,
        "(() => { const i = document.getElementById('projection'); const c = document.createElement('canvas');
           c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d');
           g.drawImage(i, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
           const rgb = []; for (let k = 0; k < d.length; k += 4) rgb.push(d[k], d[k + 1], d[k + 2]);
           return JSON.stringify([c.width, c.height, rgb]); })()",
    );
    let (w, h, rgb): (u32, u32, Vec<u8>) = serde_json::from_str(v.as_str().unwrap()).unwrap();
    image::RgbImage::from_raw(w, h, rgb).unwrap()
}

/// Waits until the page shows `layer`'s `channel`, then checks its pixels against the library.
fn check_projection(tab: &Tab, f: &common::Fixture, squared: &image::RgbImage, layer: &str, channel: usize) {
    wait_until(
        tab,
        &format!(
            "(() => {{ const i = document.getElementById('projection');
               return i.complete && i.naturalWidth > 0 && (i.dataset.unit || '').startsWith('{layer}/{channel}/'); }})()"
        ),
        &format!("the projection of {layer} channel {channel}"),
    );
    let shown = shown_projection(tab);
    let want = common::library_projection(f, squared, layer, channel);
    assert_eq!(shown.dimensions(), want.dimensions());
    let differ = shown.pixels().zip(want.pixels()).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{layer} channel {channel}: {differ} pixels differ from the library's projection");
}

#[test]
#[ignore = "needs Chromium (Debian's package): .ci/run installs it and runs this with --ignored"]
fn the_page_shows_the_library_s_projection_of_the_clicked_unit() {
    let f = common::serve(2, 32);
    let dir = tempfile::tempdir().unwrap();
    let bytes = common::png_of(&f, 23);
    let path = dir.path().join("upload.png");
    std::fs::write(&path, &bytes).unwrap();
    let squared = zf_data::Preprocess::for_input(common::SIZE).load_bytes(&bytes, &path).unwrap();

    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), std::path::PathBuf::from);
    assert!(chromium.exists(), "no Chromium at {} (install Debian's chromium, or set CHROMIUM)", chromium.display());
    let options = LaunchOptions::default_builder()
        .path(Some(chromium))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .build()
        .unwrap();
    let browser = Browser::new(options).unwrap();
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(30));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = errors.clone();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let error = match event {
            Event::LogEntryAdded(e) if format!("{:?}", e.params.entry.level) == "Error" => {
                Some(format!("log: {}", e.params.entry.text))
            }
            Event::RuntimeExceptionThrown(e) => Some(format!("exception: {:?}", e.params.exception_details)),
            Event::RuntimeConsoleAPICalled(e) if format!("{:?}", e.params.Type) == "Error" => {
                Some(format!("console.error: {:?}", e.params.args))
            }
            _ => None,
        };
        if let Some(e) = error {
            seen.lock().unwrap().push(e);
        }
    }))
    .unwrap();

    let base = format!("http://{}/", f.addr);
    tab.navigate_to(&base).unwrap().wait_until_navigated().unwrap();
    wait_until(&tab, "document.querySelectorAll('#gallery img').length === 24", "the gallery");

    // Upload: the page shows the image, its top-5 and conv5's channels (the last conv layer).
    tab.wait_for_element("#upload").unwrap().set_input_files(&[path.to_str().unwrap()]).unwrap();
    wait_until(&tab, "new URLSearchParams(location.search).get('image')?.startsWith('u') === true", "the upload");
    wait_until(&tab, "document.querySelectorAll('#channels .ch').length > 0", "the channel grid");
    let channels = eval(&tab, "document.querySelectorAll('#channels .ch').length").as_u64().unwrap() as usize;
    assert_eq!(channels, f.net.shape(f.net.layer("conv5").unwrap()).unwrap()[0]);
    assert_eq!(eval(&tab, "document.querySelectorAll('#top5 li').length"), 5);
    assert_eq!(eval(&tab, "document.querySelectorAll('#channels .ch.strongest').length"), 1);

    // Click channel 2: its projection, pixel for pixel, and its top-9 from the index.
    tab.wait_for_element("#channels .ch[data-channel='2']").unwrap().click().unwrap();
    check_projection(&tab, &f, &squared, "conv5", 2);
    wait_until(&tab, "document.querySelectorAll('#top9 .hit').length === 9", "the top-9 grid");
    wait_until(
        &tab,
        "[...document.querySelectorAll('#top9 .hit img')].every((i) => i.complete && i.naturalWidth > 0)",
        "the top-9 pictures",
    );
    assert_eq!(eval(&tab, "new URLSearchParams(location.search).get('channel')"), "2");
    // Channel 2 fires on this image: its receptive field is boxed and the caption names its unit.
    assert!(common::library_peaks(&f, &squared, "conv5")[2] > 0.0);
    assert_eq!(eval(&tab, "document.getElementById('rf').hidden"), false);
    let caption = eval(&tab, "document.getElementById('unit-info').textContent");
    assert!(caption.as_str().unwrap().starts_with("strongest unit at"), "{caption}");
    // The README's picture of the page: ZF_EXPLORER_SCREENSHOT=FILE writes it.
    if let Some(out) = std::env::var_os("ZF_EXPLORER_SCREENSHOT") {
        let png = tab
            .capture_screenshot(
                headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png,
                None,
                None,
                true,
            )
            .unwrap();
        std::fs::write(out, png).unwrap();
    }

    // Keys: right moves to channel 3, up to conv4 (keeping the channel); the address follows.
    tab.press_key("ArrowRight").unwrap();
    check_projection(&tab, &f, &squared, "conv5", 3);
    tab.press_key("ArrowUp").unwrap();
    wait_until(&tab, "new URLSearchParams(location.search).get('layer') === 'conv4'", "the layer in the address");
    check_projection(&tab, &f, &squared, "conv4", 3);
    // conv4 is not in the index: the page says so instead of a grid.
    wait_until(&tab, "document.querySelector('#top9').textContent.includes('the index holds')", "the index note");

    // The address states the view: a reload shows the same one.
    let url = eval(&tab, "location.href").as_str().unwrap().to_string();
    tab.navigate_to(&url).unwrap().wait_until_navigated().unwrap();
    check_projection(&tab, &f, &squared, "conv4", 3);
    assert_eq!(eval(&tab, "document.getElementById('layer').value"), "conv4");
    assert_eq!(eval(&tab, "document.querySelector('#channels .ch.selected')?.dataset.channel"), "3");

    // A channel that is 0 everywhere on this image: no box, and the page says it is silent.
    let (layer, silent) = ["conv1", "conv2", "conv3", "conv4", "conv5"]
        .into_iter()
        .find_map(|l| common::library_peaks(&f, &squared, l).iter().position(|&v| v <= 0.0).map(|c| (l, c)))
        .expect("the fixture's upload has a silent channel in some conv layer");
    let at = url.replace("layer=conv4", &format!("layer={layer}")).replace("channel=3", &format!("channel={silent}"));
    assert_ne!(at, url);
    tab.navigate_to(&at).unwrap().wait_until_navigated().unwrap();
    check_projection(&tab, &f, &squared, layer, silent);
    wait_until(&tab, "document.getElementById('unit-info').textContent.startsWith('silent')", "the silent note");
    assert_eq!(eval(&tab, "document.getElementById('rf').hidden"), true);

    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "the console has errors: {errors:#?}");
}
