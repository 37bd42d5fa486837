//! The paper's Fig. 7 on one photograph: slide a gray square over the image and map the
//! probability of the class the network gives the unoccluded image.
//!
//! ```sh
//! cargo run --release -p zf-probe --example occlusion -- [WEIGHTS] [IMAGE] [OUT.png]
//! ```
//!
//! WEIGHTS is a zfnet weights file with `mean.safetensors` beside it (a training run's
//! `model.safetensors`, or a converted ImageNet model); without it a randomly initialized
//! network shows the mechanics. IMAGE defaults to `data/photos/chelsea.jpg`.
#![allow(clippy::print_stdout)] // an example prints what it found

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use zf_data::{Crop, MeanImage, Preprocess};
use zf_model::init::{init_net, Init};
use zf_model::{Point, ZfConfig, ZfNet};
use zf_probe::OcclusionConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let image = args.get(1).map(PathBuf::from).unwrap_or_else(|| root.join("data/photos/chelsea.jpg"));
    let out = args.get(2).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("occlusion.png"));

    // The network and the training set's mean image (gray = the mean: 0 after subtracting it).
    let (net, mean) = match args.first() {
        Some(w) => {
            let net = ZfNet::load(w, None, &Device::Cpu)?;
            let mean = MeanImage::load(&Path::new(w).with_file_name("mean.safetensors"))?;
            (net, mean.values)
        }
        None => {
            let net = init_net(&ZfConfig::small(), Init::He, 0, &Device::Cpu)?;
            (net, vec![128.0; 3 * 256 * 256])
        }
    };

    // The paper's preprocessing: shorter side to 256, centre square, mean off, centre crop.
    let s = net.config().input_size;
    let pre = Preprocess::for_input(s);
    let mut pixels = vec![0f32; 3 * s * s];
    pre.crop_into(&pre.load(&image)?, Some(&mean), Crop::CENTRE, &mut pixels);
    let x = Tensor::from_vec(pixels, (3, s, s), &Device::Cpu)?;

    // The class the network sees, then the map over the square's positions.
    let prob = net.forward_until(&x.unsqueeze(0)?, false, Point::Prob, &mut zf_model::NoTap)?;
    let class = prob.flatten_all()?.argmax(0)?.to_scalar::<u32>()? as usize;
    let occ = zf_probe::occlusion(&net, &x, class, OcclusionConfig::default(), &mut |_, _| ())?;
    let (y, x0) = occ.weakest();
    println!(
        "class {class}: p = {:.3} unoccluded, {:.3} at worst (square at y {y}, x {x0})",
        occ.clean_prob,
        occ.min_true_prob()
    );

    // Dark where covering the image lowers the probability: one 8x8 cell per position.
    let (r, scale) = (occ.side() as u32, 8);
    let map = image::GrayImage::from_fn(r * scale, r * scale, |i, j| {
        let p = occ.true_prob[(j / scale * r + i / scale) as usize] / occ.clean_prob.max(1e-6);
        image::Luma([(255.0 * p.clamp(0.0, 1.0)) as u8])
    });
    map.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
