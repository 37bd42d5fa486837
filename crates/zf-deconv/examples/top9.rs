//! The paper's Fig. 2 in a few lines: for some conv5 feature maps, find the nine strongest
//! activations over a set of images and project each down to the pixels with the deconvnet.
//!
//! ```sh
//! cargo run --release -p zf-deconv --example top9 -- [WEIGHTS]
//! ```
//!
//! The images here are random tensors so that the example needs nothing but zf-model; in
//! practice they are preprocessed photographs (see zf-data), and WEIGHTS a trained network.
#![allow(clippy::print_stdout)] // an example prints what it found

use candle_core::{Device, Tensor};
use zf_deconv::{receptive_field, Deconvnet, TopK};
use zf_model::init::{init_net, Init};
use zf_model::{Point, Trace, ZfConfig, ZfNet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = match std::env::args().nth(1) {
        Some(w) => ZfNet::load(&w, None, &Device::Cpu)?,
        None => init_net(&ZfConfig::small(), Init::He, 0, &Device::Cpu)?,
    };
    let s = net.config().input_size;
    let images = Tensor::randn(0f32, 50.0, (32, 3, s, s), &Device::Cpu)?;

    // 1. Search: the 9 strongest activations of conv5 maps 0..4, one per image, batch by batch.
    let mut top = TopK::new(vec![(Point::Conv5, (0..4).collect())], 9, true)?;
    for start in (0..32).step_by(8) {
        let batch = images.narrow(0, start, 8)?;
        top.update(&net, &batch, &(start..start + 8).collect::<Vec<_>>())?;
    }

    // 2. Project: re-run each hit's image, keep that one activation, go down to the pixels.
    let deconv = Deconvnet::new(&net);
    for (layer, map, hits) in top.results() {
        for hit in &hits {
            let mut trace = Trace::default();
            net.forward_until(&images.narrow(0, hit.image, 1)?, false, layer, &mut trace)?;
            let unit = zf_deconv::Unit { image: 0, channel: map, y: hit.y, x: hit.x };
            let projection = deconv.project(&trace, layer, &[unit])?; // [1, 3, S, S]
            let [x0, y0, x1, y1] = receptive_field(net.config(), layer, hit.y, hit.x)?;
            let energy = projection.sqr()?.sum_all()?.to_scalar::<f32>()?;
            println!(
                "{layer} map {map}: image {:2}, unit ({:2}, {:2}) = {:7.2}, sees pixels [{x0}, {x1}) x [{y0}, {y1}), projection energy {energy:.3e}",
                hit.image, hit.y, hit.x, hit.value
            );
        }
    }
    Ok(())
}
