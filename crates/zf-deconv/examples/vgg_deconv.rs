//! The deconvnet on a VGG in a few lines: load torchvision's VGG (its state dict as PyTorch
//! writes it — `.pth` or safetensors — or `zfnet convert`'s file), run a photograph, and project
//! the strongest unit of one conv5_3 map down to the pixels.
//!
//! ```sh
//! cargo run --release -p zf-deconv --example vgg_deconv -- VGG [IMAGE] [LAYER] [CHANNEL] [OUT.png]
//! ```
//!
//! VGG is e.g. torchvision's `vgg16-397923af.pth` (any of alexnet, vgg11..vgg19, `_bn` too);
//! LAYER defaults to the last conv (conv5_3 in VGG-16), CHANNEL to 0, IMAGE (or "") to
//! `data/photos/chelsea.jpg`. The photo is resized to the network's input and ImageNet's
//! channel means are subtracted (the network divides by ImageNet's std itself).
#![allow(clippy::print_stdout)] // an example prints what it found

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use zf_deconv::{Deconvnet, Unit};
use zf_model::{config::IMAGENET_MEAN, Net, NetTrace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let weights = args.first().ok_or("usage: vgg_deconv VGG [IMAGE] [LAYER] [CHANNEL] [OUT.png]")?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let image = match args.get(1).filter(|a| !a.is_empty()) {
        Some(a) => PathBuf::from(a),
        None => root.join("data/photos/chelsea.jpg"),
    };
    let out = args.get(4).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("projection.png"));

    // Any conv stack zfnet knows: the architecture is read off the file's keys and shapes.
    let net = Net::load(weights, None, &Device::Cpu)?;
    let layer = match args.get(2) {
        Some(name) => net.layer(name)?,
        None => net.spec().last_conv().ok_or("no conv layer")?,
    };
    let channel: usize = args.get(3).map(|c| c.parse()).transpose()?.unwrap_or(0);

    // The photo as the network takes it: S x S pixels, ImageNet's mean off.
    let s = net.spec().input_size as u32;
    let rgb = image::open(&image)?.resize_to_fill(s, s, image::imageops::FilterType::Triangle).to_rgb8();
    let pixels: Vec<f32> =
        (0..3).flat_map(|c| rgb.pixels().map(move |p| p[c] as f32 - 255.0 * IMAGENET_MEAN[c] as f32)).collect();
    let x = Tensor::from_vec(pixels, (1, 3, s as usize, s as usize), &Device::Cpu)?;

    // Forward to the layer (its activations and every pool's switches), then down.
    let mut trace = NetTrace::default();
    net.forward_until(&x, layer, &mut trace)?;
    let deconv = Deconvnet::new(&net);
    let (unit, value): (Unit, f32) = deconv.strongest_layer(&trace, layer, 0, channel)?;
    let projection = deconv.project_layer(&trace, layer, &[unit])?; // [1, 3, S, S]
    let name = net.spec().layers[layer].label();
    println!("{} {name} map {channel}: strongest at ({}, {}), activation {value:.3}", net.spec().arch, unit.y, unit.x);

    // Shown as the paper shows projections: contrast-normalized around gray.
    let p = projection.flatten_all()?.to_vec1::<f32>()?;
    let peak = p.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    let plane = (s * s) as usize;
    let img = image::RgbImage::from_fn(s, s, |i, j| {
        let at = (j * s + i) as usize;
        image::Rgb([0, 1, 2].map(|c| (128.0 + 127.0 * p[c * plane + at] / peak) as u8))
    });
    img.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
