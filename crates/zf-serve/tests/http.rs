//! The server over real HTTP on loopback: good requests answer what the library computes, bad
//! ones get a 4xx with a message while the server keeps serving, the queue answers 503 with
//! Retry-After beyond its size, and 64 concurrent clients for 30 s get correct answers with
//! memory bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{data_url_image, get, library_projection, png_of, request, serve, Fixture};

fn upload(f: &Fixture, bytes: &[u8], kind: &str) -> common::Reply {
    request(f.addr, "POST", "/api/images", &[("Content-Type", kind)], bytes)
}

fn projection_of(f: &Fixture, image: &str, layer: &str, channel: usize) -> common::Reply {
    get(f.addr, &format!("/api/projection?image={image}&layer={layer}&channel={channel}"))
}

#[test]
fn good_requests_answer_what_the_library_computes() {
    let f = serve(2, 8);
    let page = get(f.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.text().contains("/assets/app.js"));
    assert_eq!(get(f.addr, "/assets/app.js").status, 200);
    let model = get(f.addr, "/api/model").json();
    let names: Vec<&str> = model["layers"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(names, ["conv1", "conv2", "conv3", "conv4", "conv5"]);
    assert_eq!(model["layers"][4]["indexed"], serde_json::json!([0, 1, 2, 3]));
    let list = get(f.addr, "/api/images?offset=38&limit=5").json();
    assert_eq!((list["total"].as_u64(), list["images"].as_array().unwrap().len()), (Some(40), 2));
    assert_eq!(list["images"][0]["id"], "d38");

    // A data set image: the projection shown is the library's, pixel for pixel.
    for (image, layer, channel) in [(3usize, "conv2", 5usize), (11, "conv5", 0), (0, "conv1", 2)] {
        let r = projection_of(&f, &format!("d{image}"), layer, channel);
        assert_eq!(r.status, 200, "{}", r.text());
        let shown = data_url_image(r.json()["projection"].as_str().unwrap());
        let want = library_projection(&f, &f.data.get(image).unwrap().image, layer, channel);
        assert!(shown == want, "d{image} {layer} channel {channel}: the projection differs from the library's");
    }
    // An uploaded image: the same, from its bytes; the picture comes back as PNG.
    let bytes = png_of(&f, 17);
    let r = upload(&f, &bytes, "image/png");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let shown = data_url_image(projection_of(&f, &id, "conv3", 4).json()["projection"].as_str().unwrap());
    let squared = zf_data::Preprocess::for_input(common::SIZE).load_bytes(&bytes, "x.png".as_ref()).unwrap();
    assert!(shown == library_projection(&f, &squared, "conv3", 4));
    let pic = get(f.addr, &format!("/api/images/{id}"));
    assert_eq!((pic.status, pic.header("content-type")), (200, Some("image/png")));
    assert_eq!(image::load_from_memory(&pic.body).unwrap().width(), common::SIZE as u32);

    // The activations: one peak per channel, the strongest the largest.
    let a = get(f.addr, "/api/activations?image=d3&layer=conv2").json();
    let peaks: Vec<f64> = a["peaks"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let strongest = a["strongest"].as_u64().unwrap() as usize;
    assert!(peaks.iter().all(|&p| p <= peaks[strongest]));
    assert_eq!(a["top5"].as_array().unwrap().len(), 5);

    // Top-9 from the index: nine hits in order of value, each with a patch and a projection.
    let t = get(f.addr, "/api/top?layer=conv5&channel=1").json();
    let hits = t["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 9);
    assert!(hits.windows(2).all(|w| w[0]["value"].as_f64() >= w[1]["value"].as_f64()));
    assert!(hits.iter().all(|h| h["patch"].as_str().unwrap().starts_with("data:image/png")));

    // Occlusion as a job, polled to its end (bounded).
    let r = request(f.addr, "POST", "/api/occlusion?image=d3&class=2", &[], &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["id"].as_u64().unwrap();
    let mut report = serde_json::Value::Null;
    for _ in 0..600 {
        report = get(f.addr, &format!("/api/jobs/{job}")).json();
        if report["state"] != "queued" && report["state"] != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(report["state"], "done", "{report}");
    let result = &report["result"];
    assert_eq!(result["class"], 2);
    assert!(result["min_prob"].as_f64() <= result["clean_prob"].as_f64());
    assert_eq!(report["done"], report["total"]);
}

/// A PNG of `w`x`h` black pixels (it compresses to little).
fn black_png(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::GrayImage::new(w, h).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

#[test]
fn bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving() {
    let f = serve(2, 8);
    let png = png_of(&f, 1);
    let mut jpeg = Vec::new();
    f.data.get(1).unwrap().image.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    let huge = black_png(8000, 6000); // 48 megapixels, over the 40 allowed, in a small file
    assert!(huge.len() < zf_serve::limits::MAX_UPLOAD_BYTES);
    let heavy = vec![7u8; zf_serve::limits::MAX_UPLOAD_BYTES + 1];
    let uploads: [(&str, &[u8], &str, u16, &str); 7] = [
        ("not an image", b"hello, not a picture", "image/png", 400, "not an image"),
        ("a truncated PNG", &png[..png.len() / 2], "image/png", 400, ""),
        ("a truncated JPEG", &jpeg[..jpeg.len() / 2], "image/jpeg", 400, ""),
        ("an empty body", b"", "image/png", 400, "empty"),
        ("too many pixels", &huge, "image/png", 413, "pixels"),
        ("too many bytes", &heavy, "image/png", 413, ""),
        ("a wrong content type", &png, "text/plain", 415, "Content-Type"),
    ];
    for (what, body, kind, status, says) in uploads {
        let r = upload(&f, body, kind);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        if r.header("content-type").is_some_and(|t| t.contains("json")) {
            let msg = r.json()["error"].as_str().unwrap().to_string();
            assert!(msg.contains(says), "{what}: {msg}");
        } else {
            assert!(!r.body.is_empty(), "{what}: no message");
        }
        assert_eq!(get(f.addr, "/api/model").status, 200, "after {what}");
    }
    let gets: [(&str, u16, &str); 16] = [
        ("/api/projection?image=d3&layer=conv9&channel=0", 400, "no layer `conv9`"),
        ("/api/projection?image=d3&layer=conv2&channel=9999", 400, "out of range"),
        ("/api/projection?image=d3&layer=conv2&channel=-1", 400, "whole number"),
        ("/api/projection?image=d3&layer=conv2", 400, "missing `channel`"),
        ("/api/activations?image=d40&layer=conv1", 404, "d40"),
        ("/api/activations?image=u0000000000000000&layer=conv1", 404, ""),
        ("/api/top?layer=conv2&channel=0", 404, "no top-k"),
        ("/api/top?layer=conv5&channel=99", 400, "out of range"),
        ("/api/projection?image=../../etc/passwd&layer=conv1&channel=0", 400, "not paths"),
        ("/api/projection?image=%2Fetc%2Fpasswd&layer=conv1&channel=0", 400, "not paths"),
        ("/api/projection?image=d1&layer=..%2F..%2Fx&channel=0", 400, "not paths"),
        ("/assets/..%2F..%2FCargo.toml", 400, ""),
        ("/assets/%2Fetc%2Fpasswd", 400, ""),
        ("/api/images/..%2f..%2fetc%2fpasswd", 400, ""),
        ("/assets/../../Cargo.toml", 400, ""),
        ("/api/jobs/abc", 400, "bad job id"),
    ];
    for (target, status, says) in gets {
        let r = get(f.addr, target);
        assert_eq!(r.status, status, "{target}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(says), "{target}: {msg}");
        assert_eq!(get(f.addr, "/api/model").status, 200, "after {target}");
    }
    let r = request(f.addr, "POST", "/api/occlusion?image=d1&class=10", &[], &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(get(f.addr, "/api/images/d1").status, 200);
}

#[test]
fn beyond_the_queue_requests_get_503_with_retry_after_and_a_job_can_be_cancelled() {
    // One worker, no waiting place: while an occlusion job holds the worker, any analysis is
    // refused. A job reported running before and after a request held the worker throughout.
    let f = serve(1, 0);
    let mut seen = 0;
    for _ in 0..20 {
        let r = request(f.addr, "POST", "/api/occlusion?image=d5", &[], &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        let job = r.json()["id"].as_u64().unwrap();
        let state = || get(f.addr, &format!("/api/jobs/{job}")).json()["state"].as_str().unwrap().to_string();
        let before = state();
        let p = projection_of(&f, "d5", "conv1", 0);
        let after = state();
        if before == "running" && after == "running" {
            seen += 1;
            assert_eq!(p.status, 503, "{}", p.text());
            assert_eq!(p.header("retry-after"), Some("1"));
            assert!(p.json()["error"].as_str().unwrap().contains("retry"));
            let c = request(f.addr, "DELETE", &format!("/api/jobs/{job}"), &[], &[]);
            assert_eq!(c.status, 200);
            let mut last = String::new();
            for _ in 0..600 {
                last = state();
                if last != "running" && last != "queued" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(last, "cancelled");
            break;
        }
        // The job ended too soon to tell: wait for it and try again.
        for _ in 0..600 {
            if !["running", "queued"].contains(&state().as_str()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(seen > 0, "never caught the job running");
    // The worker is free again.
    assert_eq!(projection_of(&f, "d5", "conv1", 0).status, 200);
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sixty_four_clients_for_thirty_seconds_get_correct_answers_with_memory_bounded() {
    let f = std::sync::Arc::new(serve(2, 32));
    let cases: Vec<(usize, &str, usize)> =
        (0..8).map(|k| (k * 5, ["conv1", "conv2", "conv3", "conv4", "conv5"][k % 5], k % 6)).collect();
    let want: Vec<image::RgbImage> =
        cases.iter().map(|&(i, l, c)| library_projection(&f, &f.data.get(i).unwrap().image, l, c)).collect();
    let want = std::sync::Arc::new(want);
    let base = png_of(&f, 2);
    // Warm up, then measure memory growth under load: every upload is a new image, so a cache
    // without a limit would keep growing.
    for &(i, l, c) in &cases {
        assert_eq!(projection_of(&f, &format!("d{i}"), l, c).status, 200);
    }
    let rss0 = rss_kib();
    let deadline = Instant::now() + Duration::from_secs(30);
    let clients: Vec<_> = (0..64)
        .map(|client| {
            let (f, want, cases, base) = (f.clone(), want.clone(), cases.clone(), base.clone());
            std::thread::spawn(move || {
                let mut counts = [0usize; 4]; // pages, projections, uploads, 503s
                let mut n = 0usize;
                while Instant::now() < deadline {
                    n += 1;
                    match (client + n) % 4 {
                        0 => {
                            let r = get(f.addr, "/");
                            assert_eq!(r.status, 200);
                            assert!(r.text().contains("/assets/app.js"));
                            counts[0] += 1;
                        }
                        1 | 2 => {
                            let k = (client * 7 + n) % cases.len();
                            let (i, l, c) = cases[k];
                            let r = projection_of(&f, &format!("d{i}"), l, c);
                            if r.status == 503 {
                                assert_eq!(r.header("retry-after"), Some("1"));
                                counts[3] += 1;
                                std::thread::sleep(Duration::from_millis(200));
                                continue;
                            }
                            assert_eq!(r.status, 200, "{}", r.text());
                            let shown = data_url_image(r.json()["projection"].as_str().unwrap());
                            assert!(shown == want[k], "client {client}: d{i} {l} {c} differs");
                            counts[1] += 1;
                        }
                        _ => {
                            // A good upload of a new image, or a bad one.
                            if n % 8 == 3 {
                                let r = upload(&f, &base[..base.len() / 3], "image/png");
                                if r.status == 503 {
                                    counts[3] += 1;
                                    std::thread::sleep(Duration::from_millis(200));
                                    continue;
                                }
                                assert_eq!(r.status, 400, "{}", r.text());
                            } else {
                                let mut img = image::load_from_memory(&base).unwrap().to_rgb8();
                                img.put_pixel(0, 0, image::Rgb([client as u8, n as u8, (n >> 8) as u8]));
                                let mut bytes = Vec::new();
                                img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
                                let r = upload(&f, &bytes, "image/png");
                                if r.status == 503 {
                                    counts[3] += 1;
                                    std::thread::sleep(Duration::from_millis(200));
                                    continue;
                                }
                                assert_eq!(r.status, 201, "{}", r.text());
                            }
                            counts[2] += 1;
                        }
                    }
                }
                counts
            })
        })
        .collect();
    let mut total = [0usize; 4];
    for c in clients {
        let counts = c.join().expect("a client failed");
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
    }
    let grown_mib = rss_kib().saturating_sub(rss0) / 1024;
    eprintln!(
        "30 s, 64 clients: {} pages, {} projections, {} uploads, {} answered 503; RSS grew {grown_mib} MiB",
        total[0], total[1], total[2], total[3]
    );
    assert!(total[1] > 0 && total[2] > 0 && total[0] > 0);
    // 64 kept uploads of a 64-px network are a few MiB; allocator slack and 64 client
    // threads' stacks stay well under this.
    assert!(grown_mib < 256, "RSS grew {grown_mib} MiB");
    assert_eq!(get(f.addr, "/api/model").status, 200);
}
