//! A real explorer for the tests: a tiny random ZFNet at 64 px, 40 generated images, a Fig. 2
//! index over them, served on 127.0.0.1 (a free port) by a runtime of its own.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{Device, Tensor};
use zf_data::{Crop, DataSpec, Dataset, GeneratedConfig, MeanImage, Preprocess, Split};
use zf_deconv::Deconvnet;
use zf_model::init::{init_net, Init};
use zf_model::{Net, NetTrace, ZfConfig};
use zf_serve::{Explorer, ExplorerParts, ServeConfig};

pub const SIZE: usize = 64;
pub const IMAGES: usize = 40;

pub struct Fixture {
    pub net: Net,
    pub data: Arc<dyn Dataset>,
    pub mean: MeanImage,
    pub addr: SocketAddr,
    _index: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the explorer with `workers` and `waiting` (an index of conv1's and conv5's first
/// four channels).
pub fn serve(workers: usize, waiting: usize) -> Fixture {
    let net = init_net(&ZfConfig::tiny().with_input_size(SIZE), Init::He, 5, &Device::Cpu).unwrap().as_net().clone();
    let data = DataSpec::parse("generated", &GeneratedConfig::default())
        .open(Split::Val, Some(IMAGES), Preprocess::for_input(SIZE))
        .unwrap();
    let mean = MeanImage::compute(data.as_ref()).unwrap();
    let index = tempfile::tempdir().unwrap();
    let selection = vec![("conv1".to_string(), vec![0, 1, 2, 3]), ("conv5".to_string(), vec![0, 1, 2, 3])];
    let config = zf_deconv::Fig2Config { top: 9, one_per_image: true, batch: 16 };
    let study =
        zf_probe::fig2_study(&net, data.clone(), &mean, selection, config, ("random", "generated"), &mut |_, _, _| {})
            .unwrap();
    study.save_index(index.path(), &net.spec().arch).unwrap();
    let index_read = zf_probe::fig2_index::Fig2Index::open(index.path(), &net.spec().arch, SIZE).unwrap();
    let explorer = Explorer::new(ExplorerParts {
        net: net.clone(),
        weights: "random".into(),
        mean: mean.clone(),
        classes: data.classes().to_vec(),
        data: Some((data.clone(), "generated".into())),
        index: Some(index_read),
    })
    .unwrap();
    let config = ServeConfig { workers, waiting, ..ServeConfig::local(0) };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(config.addr).await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let stop = async move {
                let _ = stop_rx.await;
            };
            zf_serve::server::serve(listener, Arc::new(explorer), &config, stop).await.unwrap();
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    Fixture { net, data, mean, addr, _index: index, stop: Some(stop_tx), thread: Some(thread) }
}

/// One HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer; `target` is sent as
/// written, so tests can send what a browser would refuse to.
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body: a failed write is fine then.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    Reply { status, headers, body }
}

pub fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, &[], &[])
}

/// Decodes a `data:image/png;base64,...` URL.
pub fn data_url_image(url: &str) -> image::RgbImage {
    use base64::Engine as _;
    let b64 = url.strip_prefix("data:image/png;base64,").unwrap_or_else(|| panic!("not a PNG data URL: {url:.40}"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

/// The library's projection of `channel`'s strongest unit of conv layer `layer` on a squared
/// image (the data set's `get`, or an upload after `Preprocess::load_bytes`): centre crop with
/// the mean subtracted, the deconvnet, `zf_viz::projection_image`. Independent of the server's
/// code path.
pub fn library_projection(f: &Fixture, squared: &image::RgbImage, layer: &str, channel: usize) -> image::RgbImage {
    let pre = Preprocess::for_input(SIZE);
    let mut x = vec![0f32; 3 * SIZE * SIZE];
    pre.crop_into(squared, Some(&f.mean.values), Crop::CENTRE, &mut x);
    let x = Tensor::from_vec(x, (1, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let li = f.net.layer(layer).unwrap();
    let mut trace = NetTrace::default();
    f.net.forward_until(&x, li, &mut trace).unwrap();
    let deconv = Deconvnet::new(&f.net);
    let (unit, _) = deconv.strongest_layer(&trace, li, 0, channel).unwrap();
    let p = deconv.project_layer(&trace, li, &[unit]).unwrap();
    let p: Vec<f32> = zf_deconv::to_host(&p).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    zf_viz::projection_image(&p, 3, SIZE, SIZE)
}

/// The largest value of each channel of conv layer `layer` on a squared image (the library's
/// forward pass, as in [`library_projection`]).
pub fn library_peaks(f: &Fixture, squared: &image::RgbImage, layer: &str) -> Vec<f32> {
    let pre = Preprocess::for_input(SIZE);
    let mut x = vec![0f32; 3 * SIZE * SIZE];
    pre.crop_into(squared, Some(&f.mean.values), Crop::CENTRE, &mut x);
    let x = Tensor::from_vec(x, (1, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let li = f.net.layer(layer).unwrap();
    let mut trace = NetTrace::default();
    let act = f.net.forward_until(&x, li, &mut trace).unwrap();
    let (_, c, h, w) = act.dims4().unwrap();
    let v: Vec<f32> = act.flatten_all().unwrap().to_vec1().unwrap();
    (0..c).map(|k| v[k * h * w..(k + 1) * h * w].iter().copied().fold(f32::MIN, f32::max)).collect()
}

/// A PNG of data set image `i` as it is stored (squared), for uploads.
pub fn png_of(f: &Fixture, i: usize) -> Vec<u8> {
    let img = f.data.get(i).unwrap().image;
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}
