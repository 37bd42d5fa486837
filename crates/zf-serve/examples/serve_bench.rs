//! How fast the explorer answers, for BENCHMARKS.md (measured, never asserted): the paper's
//! ZFNet at 224 px (random He weights: the time does not depend on the values) over 64
//! generated images, served on loopback.
//!
//! - click to projection: `GET /api/projection` of one channel's strongest unit, per conv
//!   layer, one request at a time (the median and the 90th percentile of 20, each a new image
//!   so nothing is kept);
//! - next channel: the same of the next 20 channels of the same image and layer (an arrow key):
//!   the forward pass is kept, only the deconvnet's walk down runs;
//! - click to channel grid: `GET /api/activations` of conv5 (forward, top-5, 256 thumbnails);
//! - requests/s: 16 clients asking for projections (mixed layers) for 10 s, and 16 clients
//!   loading the page for 5 s.
//!
//! `cargo run --release -p zf-serve --example serve_bench`
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use candle_core::Device;
use zf_data::{DataSpec, GeneratedConfig, MeanImage, Preprocess, Split};
use zf_model::init::{init_net, Init};
use zf_model::ZfConfig;
use zf_serve::{Explorer, ExplorerParts, ServeConfig};

fn get(addr: SocketAddr, target: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let status = String::from_utf8_lossy(&raw[9..12]).parse().unwrap();
    (status, raw.len())
}

fn quantiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[(ms.len() * 9) / 10])
}

/// Asks for each of `targets` in turn, one at a time, and prints a table row `what` with the
/// median and 90th percentile of the answers' times (each must be 200).
fn row(addr: SocketAddr, what: &str, targets: impl Iterator<Item = String>) {
    let ms: Vec<f64> = targets
        .map(|target| {
            let t = Instant::now();
            assert_eq!(get(addr, &target).0, 200, "{target}");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (m, p) = quantiles(ms);
    println!("| {what} | {m:.1} | {p:.1} |");
}

/// `clients` threads running `target(client, n)` for `secs`: answered requests per second
/// (503s are counted apart and retried after Retry-After's second).
fn throughput(addr: SocketAddr, clients: usize, secs: u64, target: fn(usize, usize) -> String) -> (f64, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let (mut ok, mut busy, mut n) = (0usize, 0usize, 0usize);
                while Instant::now() < deadline {
                    n += 1;
                    match get(addr, &target(c, n)).0 {
                        200 => ok += 1,
                        503 => {
                            busy += 1;
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        s => panic!("status {s}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let (ok, busy) = threads.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    (ok as f64 / secs as f64, busy)
}

fn main() {
    let cfg = ZfConfig::paper();
    let net = init_net(&cfg, Init::He, 1, &Device::Cpu).unwrap().as_net().clone();
    let size = net.spec().input_size;
    let data = DataSpec::parse("generated", &GeneratedConfig::default())
        .open(Split::Val, Some(64), Preprocess::for_input(size))
        .unwrap();
    let mean = MeanImage::compute(data.as_ref()).unwrap();
    let explorer = Explorer::new(ExplorerParts {
        net,
        weights: "random".into(),
        mean,
        classes: Vec::new(),
        data: Some((data, "generated".into())),
        index: None,
    })
    .unwrap();
    let config = ServeConfig::local(0);
    let workers = config.workers;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        zf_serve::server::run_blocking(&config, explorer, |a| tx.send(a).unwrap()).unwrap();
    });
    let addr = rx.recv().unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap().trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("zfnet explorer, ZFNet {size} px (paper widths), {workers} workers, {cpu}");
    get(addr, "/api/projection?image=d0&layer=conv1&channel=0"); // warm up
    println!("| request | median ms | p90 ms |\n|---|---|---|");
    let layers = ["conv1", "conv2", "conv3", "conv4", "conv5"];
    for (n, layer) in layers.into_iter().enumerate() {
        // 20 new images per layer: 2..21 for conv1, 22..41 for conv2, ...
        let new =
            (0..20).map(|k| format!("/api/projection?image=d{}&layer={layer}&channel={k}", (2 + 20 * n + k) % 64));
        row(addr, &format!("click to projection, {layer}"), new);
    }
    for (n, layer) in layers.into_iter().enumerate() {
        let at = |k| format!("/api/projection?image=d{}&layer={layer}&channel={k}", 40 + n);
        assert_eq!(get(addr, &at(0)).0, 200);
        row(addr, &format!("next channel, {layer}"), (1..=20).map(at));
    }
    let grids = (0..20).map(|k| format!("/api/activations?image=d{}&layer=conv5", k + 3));
    row(addr, "click to channel grid, conv5 (256 channels)", grids);
    let (rps, busy) = throughput(addr, 16, 10, |c, n| {
        let layer = ["conv1", "conv2", "conv3", "conv4", "conv5"][(c + n) % 5];
        format!("/api/projection?image=d{}&layer={layer}&channel={}", (c * 13 + n) % 64, n % 96)
    });
    println!("\nprojections, 16 clients for 10 s: {rps:.1} requests/s ({busy} answered 503)");
    let (rps, busy) = throughput(addr, 16, 5, |_, _| "/".to_string());
    println!("page loads, 16 clients for 5 s: {rps:.0} requests/s ({busy} answered 503)");
}
