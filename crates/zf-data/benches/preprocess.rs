//! Input-side throughput: decode + preprocess of real JPEGs (data/photos), rendering of the
//! generated set, and whole loader epochs on 1 and 2 threads. `cargo bench -p zf-data`.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zf_data::{Crop, Dataset, Generated, GeneratedConfig, ImageFolder, Loader, LoaderConfig, Preprocess};

fn photos() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/photos");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("data/photos")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("photo");
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

fn decode_preprocess(c: &mut Criterion) {
    let photos = photos();
    let pre = Preprocess::paper();
    let mut out = vec![0f32; 3 * 224 * 224];
    let mut g = c.benchmark_group("single-thread");
    g.throughput(Throughput::Elements(photos.len() as u64));
    g.bench_function("decode+preprocess jpeg", |b| {
        b.iter(|| {
            for (p, bytes) in &photos {
                let img = pre.load_bytes(bytes, p).expect("decodes");
                pre.crop_into(&img, None, Crop(3), &mut out);
            }
        })
    });
    let gen = Generated::new(GeneratedConfig::default());
    g.throughput(Throughput::Elements(8));
    g.bench_function("render generated", |b| {
        b.iter(|| {
            for i in 0..8 {
                gen.get(i).expect("renders");
            }
        })
    });
    g.finish();
}

fn loader(c: &mut Criterion) {
    // 96 JPEGs: the photos copied 16 times into 2 classes.
    let dir = tempfile::tempdir().expect("tempdir");
    for (k, (p, _)) in photos().iter().enumerate() {
        for copy in 0..16 {
            let class = dir.path().join(format!("class{}", k % 2));
            std::fs::create_dir_all(&class).expect("mkdir");
            std::fs::copy(p, class.join(format!("{k}-{copy}.jpg"))).expect("copy");
        }
    }
    let folder: Arc<dyn Dataset> = Arc::new(ImageFolder::open(dir.path(), Preprocess::paper()).expect("folder"));
    let generated: Arc<dyn Dataset> = Arc::new(Generated::new(GeneratedConfig { len: 96, ..Default::default() }));
    let mut g = c.benchmark_group("loader");
    g.sample_size(10);
    for (name, set) in [("jpeg folder", &folder), ("generated", &generated)] {
        for threads in [1, 2] {
            let loader =
                Loader::new(set.clone(), None, LoaderConfig { threads, cache_bytes: 0, ..LoaderConfig::train(32, 0) })
                    .expect("loader");
            g.throughput(Throughput::Elements(set.len() as u64));
            g.bench_function(format!("{name}, {threads} thread(s), batch 32"), |b| {
                b.iter(|| {
                    for batch in loader.epoch(0) {
                        batch.expect("batch");
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decode_preprocess, loader);
criterion_main!(benches);
