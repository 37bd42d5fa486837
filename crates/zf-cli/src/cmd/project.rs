//! `zfnet project`: one deconvnet projection (per input image) of a chosen unit.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zf_deconv::{receptive_field_of, Deconvnet, Unit};
use zf_model::Device;
use zf_model::NetTrace;
use zf_viz::{draw_box, magnify, minmax_image, projection_image, save_png, stack, Direction};

use crate::args::{layer_arg, ModelInput};

/// Project one activation down to the pixels with the deconvnet (paper Sec. 2.1): keep the
/// unit of LAYER, CHANNEL at POSITION (default: that channel's strongest unit in each image),
/// zero all others, and go down through switch unpooling, ReLU and the transposed filters.
///
/// Any network zfnet loads: ZFNet, or torchvision's AlexNet and VGG (batch norm folded into
/// the filters).
///
/// Writes OUT/projection.png (the input with the unit's receptive field boxed, the projection,
/// and the projection inside the receptive field, magnified), OUT/projection.safetensors (the
/// projection under `projection`, [3,S,S], or [N,3,S,S] for N inputs) and OUT/projection.json
/// (units, values, receptive fields).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet project --weights model.safetensors --input x.safetensors --layer conv5 --channel 12 --out proj\n  zfnet project --weights model.safetensors --input cat.jpg --mean mean.safetensors --layer 3 --channel 0 --position 6,7 --out proj\n  zfnet project --weights vgg16.pth --input cat.jpg --layer conv5_3 --channel 7 --out proj"
)]
pub struct Args {
    #[command(flatten)]
    src: ModelInput,
    /// A conv layer: its name (ZFNet: conv1..conv5 or the paper's 1..5; torchvision: a key,
    /// features.28, or an alias, conv5_3).
    #[arg(long, value_name = "L")]
    layer: String,
    /// Feature map of the layer.
    #[arg(long, value_name = "C")]
    channel: usize,
    /// Row,column of the unit in the feature map (default: the channel's strongest unit).
    #[arg(long, value_name = "R,C")]
    position: Option<String>,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let (net, x) = args.src.load_any(device)?;
    let layer = layer_arg(&net, &args.layer)?;
    let name = net.spec().layers[layer].label().to_string();
    if !matches!(net.spec().layers[layer].kind, zf_model::LayerKind::Conv { .. }) {
        bail!("the deconvnet projects conv layers (the paper's layers 1-5 in ZFNet), got {name}")
    }
    let n = x.dim(0)?;
    let mut trace = NetTrace::default();
    net.forward_until(&x, layer, &mut trace)?;
    let deconv = Deconvnet::new(&net);
    let position = match &args.position {
        Some(p) => {
            let (r, c) = p.split_once(',').context("--position takes ROW,COL")?;
            Some((
                r.trim().parse::<usize>().context("--position row")?,
                c.trim().parse::<usize>().context("--position column")?,
            ))
        }
        None => None,
    };
    let mut units = Vec::new();
    for image in 0..n {
        units.push(match position {
            Some((y, x)) => Unit { image, channel: args.channel, y, x },
            None => deconv.strongest_layer(&trace, layer, image, args.channel)?.0,
        });
    }
    let proj = deconv.project_layer(&trace, layer, &units)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let s = net.spec().input_size;
    let act = trace.activation(layer).context("no activation")?.to_device(&Device::Cpu)?;
    let host = zf_deconv::to_host(&proj)?;
    let input = x.to_device(&Device::Cpu)?;
    let mut rows = Vec::new();
    let mut records = Vec::new();
    for (k, u) in units.iter().enumerate() {
        let value = act.get(u.image)?.get(u.channel)?.get(u.y)?.get(u.x)?.to_scalar::<f32>()?;
        let rf = receptive_field_of(net.spec(), layer, u.y, u.x)?;
        let p: Vec<f32> = host.get(k)?.flatten_all()?.to_vec1()?;
        let mut inp = minmax_image(&input.get(u.image)?.flatten_all()?.to_vec1::<f32>()?, 3, s, s);
        draw_box(&mut inp, rf.map(|v| v as u32), [255, 0, 0]);
        let pic = projection_image(&p, 3, s, s);
        let crop =
            image::imageops::crop_imm(&pic, rf[0] as u32, rf[1] as u32, (rf[2] - rf[0]) as u32, (rf[3] - rf[1]) as u32)
                .to_image();
        let zoom = (s as u32 / crop.width().max(crop.height()).max(1)).max(1);
        rows.push(stack(&[inp, pic, magnify(&crop, zoom)], Direction::Across, 6));
        records.push(serde_json::json!({
            "image": u.image, "layer": name, "key": net.spec().layers[layer].name, "channel": u.channel, "position": [u.y, u.x],
            "value": value, "receptive_field": rf,
        }));
        tracing::info!(
            "{name} channel {} at ({}, {}) of image {}: activation {value:.4}, receptive field {rf:?}",
            u.channel,
            u.y,
            u.x,
            u.image
        );
    }
    save_png(&stack(&rows, Direction::Down, 6), &args.out.join("projection.png"))?;
    let tensor = if n == 1 { proj.squeeze(0)? } else { proj };
    let meta = HashMap::from([("layer".to_string(), name.clone()), ("weights".to_string(), args.src.weights.clone())]);
    zf_model::weights::save_tensors(
        &[("projection".to_string(), tensor.to_device(&Device::Cpu)?)],
        meta,
        &args.out.join("projection.safetensors"),
    )?;
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "weights": args.src.weights, "units": records }))?;
    zf_data::write_atomic(&args.out.join("projection.json"), &json)?;
    tracing::info!("wrote projection.png, projection.safetensors and projection.json to {}", args.out.display());
    Ok(())
}
