//! zf-data end to end: decoding every kind of input, image folders with bad files in them, the
//! mean image, the class-names file, and the loader's order, crops and determinism.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use zf_data::folder::{read_classes, write_classes};
use zf_data::preprocess::decode;
use zf_data::{Crops, Dataset, Generated, GeneratedConfig, ImageFolder, Loader, LoaderConfig, MeanImage, Preprocess};

fn photos() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/photos")
}

fn png(img: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

#[test]
fn every_kind_of_image_decodes_to_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Grayscale 8-bit, grayscale 16-bit, gray+alpha, RGBA, RGB 16-bit.
    ImageBuffer::<Luma<u8>, _>::from_pixel(8, 6, Luma([77])).save(d.join("g8.png")).unwrap();
    ImageBuffer::<Luma<u16>, _>::from_pixel(8, 6, Luma([65535])).save(d.join("g16.png")).unwrap();
    ImageBuffer::<LumaA<u8>, _>::from_pixel(8, 6, LumaA([10, 0])).save(d.join("ga.png")).unwrap();
    ImageBuffer::<Rgba<u8>, _>::from_pixel(8, 6, Rgba([1, 2, 3, 4])).save(d.join("rgba.png")).unwrap();
    ImageBuffer::<Rgb<u16>, _>::from_pixel(8, 6, Rgb([0, 32896, 65535])).save(d.join("rgb16.png")).unwrap();
    let read = |n: &str| decode(&std::fs::read(d.join(n)).unwrap(), &d.join(n)).unwrap();
    assert_eq!(read("g8.png").get_pixel(0, 0).0, [77, 77, 77]);
    assert_eq!(read("g16.png").get_pixel(0, 0).0, [255, 255, 255]);
    assert_eq!(read("ga.png").get_pixel(0, 0).0, [10, 10, 10]); // alpha dropped
    assert_eq!(read("rgba.png").get_pixel(0, 0).0, [1, 2, 3]);
    assert_eq!(read("rgb16.png").get_pixel(0, 0).0, [0, 128, 255]);
    // Netpbm, which the folder reader lists: binary PPM (P6) and PGM (P5), written by hand.
    let mut ppm = b"P6\n2 1\n255\n".to_vec();
    ppm.extend_from_slice(&[10, 20, 30, 40, 50, 60]);
    std::fs::write(d.join("c.ppm"), &ppm).unwrap();
    std::fs::write(d.join("g.pgm"), [b"P5\n2 1\n255\n".as_slice(), &[99, 7]].concat()).unwrap();
    assert_eq!(read("c.ppm").get_pixel(1, 0).0, [40, 50, 60]);
    assert_eq!(read("g.pgm").get_pixel(0, 0).0, [99, 99, 99]);
    // CMYK JPEG (made by fixtures/make_fixtures.py): left half red, right half blue.
    let cmyk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmyk.jpg");
    let img = decode(&std::fs::read(&cmyk).unwrap(), &cmyk).unwrap();
    assert_eq!(img.dimensions(), (40, 30));
    let [r, g, b] = img.get_pixel(5, 15).0;
    assert!(r > 200 && g < 60 && b < 60, "left half should be red, got {r},{g},{b}");
    let [r, g, b] = img.get_pixel(35, 15).0;
    assert!(r < 60 && g < 60 && b > 200, "right half should be blue, got {r},{g},{b}");
    // Real photographs, colour and grayscale JPEG, at odd aspect ratios.
    for (name, dims) in [("chelsea.jpg", (451, 300)), ("rocket.jpg", (640, 427)), ("camera.jpg", (512, 512))] {
        let p = photos().join(name);
        let img = decode(&std::fs::read(&p).unwrap(), &p).unwrap();
        assert_eq!(img.dimensions(), dims);
        let sq = Preprocess::paper().load(&p).unwrap();
        assert_eq!(sq.dimensions(), (256, 256));
    }
}

/// A PNG header claiming `w x h` pixels, with valid CRCs, and no pixel data.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    out
}

/// `train/` with three classes: `a` (3 good PNGs and 5 bad files), `b` (2 good, a photo
/// among them), `c` (empty), and a stray text file at the top.
fn messy_folder(root: &Path) {
    let g = Generated::new(GeneratedConfig { seed: 9, len: 6, ..Default::default() });
    for i in 0..3 {
        png(&g.render(i).0, &root.join(format!("a/{i}.png")));
    }
    png(&g.render(3).0, &root.join("b/0.png"));
    std::fs::copy(photos().join("coffee.jpg"), root.join("b/1.JPEG")).unwrap();
    std::fs::create_dir_all(root.join("c")).unwrap();
    std::fs::write(root.join("a/text.jpg"), b"this is not an image").unwrap();
    std::fs::write(root.join("a/empty.png"), b"").unwrap();
    let jpeg = std::fs::read(photos().join("chelsea.jpg")).unwrap();
    std::fs::write(root.join("a/truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(root.join("a/bomb.png"), bomb_png(100_000, 100_000)).unwrap();
    std::fs::write(root.join("a/garbage.png"), [0x89u8, b'P', b'N', b'G', 1, 2, 3]).unwrap();
    std::fs::write(root.join("a/notes.txt"), b"ignored: not an image extension").unwrap();
    std::fs::write(root.join("README"), b"ignored").unwrap();
}

#[test]
fn bad_files_are_skipped_named_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    messy_folder(dir.path());
    let set = ImageFolder::open(dir.path(), Preprocess::paper()).unwrap();
    assert_eq!(set.classes(), ["a", "b", "c"]);
    assert_eq!(set.len(), 10); // 8 image-named files in a, 2 in b
                               // Each bad file's error says what is wrong with it.
    let errs: Vec<String> = (0..set.len()).filter_map(|i| set.get(i).err().map(|e| e.to_string())).collect();
    assert_eq!(errs.len(), 5, "{errs:#?}");
    let find =
        |name: &str| errs.iter().find(|e| e.contains(name)).unwrap_or_else(|| panic!("no error for {name}: {errs:#?}"));
    assert!(find("text.jpg").contains("not an image"));
    assert!(find("empty.png").contains("empty file"));
    assert!(find("truncated.jpg").contains("truncated JPEG"));
    assert!(find("bomb.png").contains("refused: larger than 16384x16384"));
    assert!(find("garbage.png").contains("does not decode") || find("garbage.png").contains("not an image"));
    // The loader trains on the rest, over two epochs, and counts the bad ones once.
    let loader = Loader::new(Arc::new(set), None, LoaderConfig { threads: 2, ..LoaderConfig::train(3, 1) }).unwrap();
    for epoch in 0..2 {
        let mut seen = Vec::new();
        for b in loader.epoch(epoch) {
            let b = b.unwrap();
            assert_eq!(b.images.dims()[1..], [3, 224, 224]);
            seen.extend(b.indices);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 8, 9], "epoch {epoch}");
    }
    assert_eq!(loader.skipped(), 5);
}

#[test]
fn a_folder_without_usable_images_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // No class folders.
    let e = ImageFolder::open(root, Preprocess::paper()).unwrap_err().to_string();
    assert!(e.contains("expected one sub-folder per class"), "{e}");
    // Class folders without images.
    std::fs::create_dir_all(root.join("x")).unwrap();
    std::fs::write(root.join("x/a.txt"), b"").unwrap();
    let e = ImageFolder::open(root, Preprocess::paper()).unwrap_err().to_string();
    assert!(e.contains("none holding an image file"), "{e}");
    // Only bad images: the loader's epoch ends in an error, after trying each.
    std::fs::write(root.join("x/a.jpg"), b"nope").unwrap();
    std::fs::write(root.join("x/b.jpg"), b"nope").unwrap();
    let set = ImageFolder::open(root, Preprocess::paper()).unwrap();
    let loader = Loader::new(Arc::new(set), None, LoaderConfig::eval(1, Crops::Centre)).unwrap();
    let items: Vec<_> = loader.epoch(0).collect();
    assert_eq!(items.len(), 1);
    let e = items[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("no usable image") && e.contains("all 2 images failed to load"), "{e}");
}

#[test]
fn class_names_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("classes.txt");
    let names: Vec<String> = ["n01440764 tench", "goldfish", "great white shark"].map(String::from).to_vec();
    write_classes(&p, &names).unwrap();
    assert_eq!(read_classes(&p).unwrap(), names);
    std::fs::write(&p, "# comment\n\n").unwrap();
    assert!(read_classes(&p).unwrap_err().to_string().contains("no class names"));
}

/// A data set of solid-colour images: image i has every pixel equal to `(i, 2i, 3i)`.
struct Solid(usize);

impl Dataset for Solid {
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, i: usize) -> zf_data::Result<zf_data::Sample> {
        let v = i as u8;
        Ok(zf_data::Sample { image: RgbImage::from_pixel(8, 8, Rgb([v, 2 * v, 3 * v])), label: i % 2 })
    }
    fn label(&self, i: usize) -> usize {
        i % 2
    }
    fn classes(&self) -> &[String] {
        &[]
    }
    fn describe(&self, i: usize) -> String {
        format!("solid {i}")
    }
    fn preprocess(&self) -> Preprocess {
        Preprocess { resize: 8, crop: 6 }
    }
}

#[test]
fn mean_image_of_known_inputs_and_its_file() {
    // Mean of 0..10 is 4.5 in red, 9 in green, 13.5 in blue, at every pixel.
    let m = MeanImage::compute(&Solid(10)).unwrap();
    assert_eq!((m.side, m.count), (8, 10));
    assert!(m.values[..64].iter().all(|&v| v == 4.5));
    assert!(m.values[64..128].iter().all(|&v| v == 9.0));
    assert!(m.values[128..].iter().all(|&v| v == 13.5));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mean.safetensors");
    m.save(&p).unwrap();
    let back = MeanImage::load(&p).unwrap();
    assert_eq!(back.values, m.values);
    // Subtracted by the loader: image 3 (3, 6, 9) minus the mean.
    let loader = Loader::new(Arc::new(Solid(10)), Some(&m), LoaderConfig::eval(10, Crops::Centre)).unwrap();
    let b = loader.epoch(0).next().unwrap().unwrap();
    let img3: Vec<f32> = b.images.get(3).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!((img3[0], img3[36], img3[72]), (3.0 - 4.5, 6.0 - 9.0, 9.0 - 13.5));
    // A mean of the wrong size is refused.
    let wrong = MeanImage { side: 4, values: vec![0.0; 48], count: 1 };
    let e =
        Loader::new(Arc::new(Solid(2)), Some(&wrong), LoaderConfig::eval(1, Crops::Centre)).unwrap_err().to_string();
    assert!(e.contains("mean image is 4x4, the data set's images are 8x8"), "{e}");
}

#[test]
fn loader_order_is_seeded_reshuffled_and_thread_independent() {
    let set: Arc<dyn Dataset> = Arc::new(Generated::new(GeneratedConfig { seed: 4, len: 24, ..Default::default() }));
    let run = |threads: usize, seed: u64, epoch: usize| -> (Vec<usize>, Vec<f32>) {
        let loader = Loader::new(set.clone(), None, LoaderConfig { threads, ..LoaderConfig::train(5, seed) }).unwrap();
        let (mut idx, mut px) = (Vec::new(), Vec::new());
        for b in loader.epoch(epoch) {
            let b = b.unwrap();
            let labels: Vec<u32> = b.labels.to_vec1().unwrap();
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(labels[k] as usize, i % 10);
            }
            idx.extend(b.indices);
            px.extend(b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().step_by(997));
        }
        (idx, px)
    };
    let a = run(1, 7, 0);
    assert_eq!(a, run(2, 7, 0), "threads do not change the batches");
    let mut sorted = a.0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..24).collect::<Vec<_>>(), "every image once per epoch");
    assert_ne!(a.0, run(1, 7, 1).0, "reshuffled each epoch");
    assert_ne!(a.0, run(1, 8, 0).0, "another seed, another order");
    // Random crops cover the ten over many images; evaluation uses the centre.
    let loader = Loader::new(set.clone(), None, LoaderConfig::train(5, 7)).unwrap();
    let crops: std::collections::HashSet<usize> = (0..200).map(|i| loader.crop_for(0, i).0).collect();
    assert_eq!(crops.len(), 10);
    // Ten crops: 10 B images, the first the centre crop and the sixth its mirror image.
    let ten = Loader::new(set.clone(), None, LoaderConfig::eval(2, Crops::Ten)).unwrap();
    let b = ten.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.images.dims(), &[20, 3, 224, 224]);
    assert_eq!(b.labels.dims(), &[2]);
    let centre: Vec<f32> = b.images.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let mirror = b.images.get(5).unwrap().flip(&[2]).unwrap();
    let mirror: Vec<f32> = mirror.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(centre, mirror);
    // Resuming mid-epoch gives the remaining batches.
    let full: Vec<Vec<usize>> = loader.epoch(3).map(|b| b.unwrap().indices).collect();
    let rest: Vec<Vec<usize>> = loader.epoch_from(3, 2).map(|b| b.unwrap().indices).collect();
    assert_eq!(full[2..], rest[..]);
}

#[test]
fn generated_set_writes_an_image_folder_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let g = Generated::new(GeneratedConfig { seed: 11, len: 20, ..Default::default() });
    g.write_folder(dir.path(), &|| {}).unwrap();
    write_classes(&dir.path().join("classes.txt"), g.classes()).unwrap();
    let set = ImageFolder::open(dir.path(), Preprocess::paper()).unwrap();
    // Folder order sorts class names; labels follow it.
    let mut sorted = g.classes().to_vec();
    sorted.sort();
    assert_eq!(set.classes(), &sorted[..]);
    assert_eq!(set.len(), 20);
    for (path, label) in set.files() {
        let ann = zf_data::generated::read_annotation(path).unwrap().unwrap();
        assert_eq!(set.classes()[*label], ann.class.name());
        let i: usize = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        // PNG is lossless: the file holds exactly the rendered pixels.
        assert_eq!(Preprocess::paper().load(path).unwrap().as_raw(), g.render(i).0.as_raw());
        assert_eq!(ann, g.annotation(i));
    }
}

#[test]
fn the_image_cache_changes_no_batch_and_respects_its_budget() {
    // Two epochs through one loader with a cache (the second served from it), a budget of four
    // 256x256 images (so most are decoded every time), and no cache: the same batches.
    let set: Arc<dyn Dataset> = Arc::new(Generated::new(GeneratedConfig { seed: 2, len: 12, ..Default::default() }));
    let pixels = |cache_bytes: usize| -> Vec<f32> {
        let loader =
            Loader::new(set.clone(), None, LoaderConfig { cache_bytes, threads: 2, ..LoaderConfig::train(5, 3) })
                .unwrap();
        let mut out = Vec::new();
        for epoch in 0..2 {
            for b in loader.epoch(epoch) {
                out.extend(b.unwrap().images.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().step_by(101));
            }
        }
        out
    };
    let cached = pixels(zf_data::loader::DEFAULT_CACHE_BYTES);
    assert_eq!(cached, pixels(4 * 256 * 256 * 3));
    assert_eq!(cached, pixels(0));
}
