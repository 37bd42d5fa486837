//! `zfnet bench`: throughput of the network, printed as JSON lines in the format of
//! python/zfnet_torch.py, so that both can be compared side by side.

use anyhow::{bail, Result};
use zf_model::init::{init_net, Init};
use zf_model::{Device, Net, NetSpec, Tensor, ZfConfig};
use zf_train::bench::median_time;

/// Time the network on random inputs and print one JSON object per measurement:
/// {"bench", "impl", "threads", "width", "batch", "median_s", "images_per_s"}.
///
/// Threads follow RAYON_NUM_THREADS (all cores when unset).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet bench\n  RAYON_NUM_THREADS=2 zfnet bench --what forward --width 0.25 --batch 128 --reps 5"
)]
pub struct Args {
    /// What to time, comma-separated: forward (a batch, evaluation mode); train (one training
    /// step: forward with dropout, cross-entropy over 1000 classes, backward, the momentum update
    /// and filter renormalization, as the training loop does it); project (the forward
    /// pass of one image to conv5 with switches, then the deconvnet projection of its strongest
    /// conv5 unit, as python/zfnet_torch.py times it; with --batch B > 1, B projections
    /// of that image's conv5 maps from the one forward pass; images/s = projections/s); deconv
    /// (the deconvnet's own work: the walk down from the strongest unit of the last conv layer,
    /// given the switches of one forward pass recorded once before the timing, what a second
    /// click on a unit of the same image costs; with --batch B, B units of the first B maps);
    /// occlusion (one Fig. 7 map of one image: 48-pixel square, stride 8, --batch occluded images
    /// per forward; images/s = occluded images/s, median_s = one map); layers (conv1..conv5
    /// each alone on a --batch of its input shape, forward and backward, in GFLOP/s beside the
    /// GFLOP/s of a 2048x2048 matrix product, the attainable peak of the same gemm; GFLOP/s
    /// count a direct convolution's multiply-adds, so conv3..conv5, computed by Winograd's
    /// F(2x2, 3x3) with 16 multiplications where the direct sum takes 36, can pass the peak).
    #[arg(long, default_value = "forward", value_name = "LIST")]
    what: String,
    /// The network: zfnet (the paper's, at --width), or torchvision's alexnet, vgg11, vgg13,
    /// vgg16, vgg19 (or a `_bn` variant, batch norms folded) at their published widths, 224
    /// pixels, random weights; for these, forward, project and deconv (the strongest unit of the
    /// last conv layer) and occlusion.
    #[arg(long, default_value = "zfnet", value_name = "ARCH")]
    arch: String,
    /// Width multiplier of the paper's network (zfnet only; default 1).
    #[arg(long, value_name = "W")]
    width: Option<f64>,
    /// Images per batch.
    #[arg(long, default_value_t = 16, value_name = "B")]
    batch: usize,
    /// Timed repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5, value_name = "R")]
    reps: usize,
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args, device: &Device) -> Result<()> {
    if args.reps == 0 || args.batch == 0 {
        bail!("--reps and --batch must be at least 1")
    }
    if args.arch != "zfnet" && args.width.is_some() {
        bail!("--width scales ZFNet; {} runs at its published widths", args.arch)
    }
    // ZFNet (which also trains and times its layers), or a torchvision network.
    let (config, zfnet, net) = if args.arch == "zfnet" {
        let config = ZfConfig::paper().with_width(args.width.unwrap_or(1.0));
        let zfnet = init_net(&config, Init::Paper, 0, device)?;
        let net = zfnet.as_net().clone();
        (Some(config), Some(zfnet), net)
    } else {
        (None, None, Net::init(&NetSpec::torchvision(&args.arch, 1000)?, 0, device)?)
    };
    let s = net.spec().input_size;
    let x = Tensor::randn(0f32, 50., (args.batch, 3, s, s), device)?;
    let threads = zf_model::device::threads();
    // What every line says besides its numbers.
    let head = |bench: String| {
        let mut v = serde_json::json!({
            "bench": bench,
            "impl": format!("zfnet {} (candle)", env!("CARGO_PKG_VERSION")),
            "threads": threads,
            "batch": args.batch,
        });
        match &config {
            Some(_) => v["width"] = serde_json::json!(args.width.unwrap_or(1.0)),
            None => v["arch"] = serde_json::json!(args.arch),
        }
        v
    };
    for what in args.what.split(',').map(str::trim) {
        let (median, per_run) = match (what, &zfnet, &config) {
            ("layers", Some(zfnet), _) => {
                let peak = zf_train::bench::matmul_gflops(2048, args.reps, device)?;
                for l in zf_train::bench::conv_layers(zfnet, args.batch, args.reps, device)? {
                    for (pass, seconds, gflops) in
                        [("forward", l.forward_s, l.forward_gflops()), ("backward", l.backward_s, l.backward_gflops())]
                    {
                        let mut line = head(format!("{}-{pass}", l.layer));
                        line["median_s"] = serde_json::json!((seconds * 1e6).round() / 1e6);
                        line["gflops"] = serde_json::json!((gflops * 10.0).round() / 10.0);
                        line["peak_gflops"] = serde_json::json!((peak * 10.0).round() / 10.0);
                        line["of_peak"] = serde_json::json!((gflops / peak * 1000.0).round() / 1000.0);
                        println!("{line}");
                    }
                }
                continue;
            }
            ("forward", _, _) => (
                median_time::<anyhow::Error>(args.reps, || {
                    let y = net.forward(&x)?;
                    device.synchronize()?;
                    drop(y);
                    Ok(())
                })?,
                args.batch,
            ),
            ("project", _, _) => (project(&net, &x, args.batch, args.reps, device)?, args.batch),
            ("deconv", _, _) => (deconv(&net, &x, args.batch, args.reps, device)?, args.batch),
            ("train", Some(_), Some(config)) => {
                // The training loop's own step (zf_train::Trainer) with the paper's recipe.
                let recipe = zf_train::TrainConfig { model: config.clone(), ..zf_train::TrainConfig::paper() };
                let mut trainer = zf_train::Trainer::new(&recipe, device)?;
                let n = args.batch as u32;
                let labels =
                    Tensor::from_vec((0..n).map(|i| (i * 37) % config.classes as u32).collect(), args.batch, device)?;
                let mut step = 0u64;
                let t = median_time::<anyhow::Error>(args.reps, || {
                    trainer.step(&x, &labels, recipe.lr, step)?;
                    step += 1;
                    device.synchronize()?;
                    Ok(())
                })?;
                (t, args.batch)
            }
            ("occlusion", _, _) => {
                // One map of one image, as python/zfnet_torch.py times it: a 48-pixel square,
                // stride 8 (529 positions at 224), `--batch` occluded images per forward.
                let cfg = zf_probe::OcclusionConfig { batch: args.batch, ..Default::default() };
                let one = x.get(0)?;
                let t = median_time::<anyhow::Error>((args.reps / 3).max(1), || {
                    zf_probe::occlusion(&net, &one, 0, cfg, &mut |_, _| ())?;
                    Ok(())
                })?;
                (t, zf_probe::OcclusionConfig::default().offsets(s)?.len().pow(2))
            }
            (other @ ("train" | "layers"), None, _) => {
                bail!("`{other}` times ZFNet; {} has forward, project, deconv and occlusion", args.arch)
            }
            (other, _, _) => {
                bail!("unknown benchmark `{other}`: expected forward, train, project, deconv, occlusion or layers")
            }
        };
        let mut line = head(what.to_string());
        line["median_s"] = serde_json::json!((median * 1e5).round() / 1e5);
        line["images_per_s"] = serde_json::json!((per_run as f64 / median * 100.0).round() / 100.0);
        println!("{line}");
    }
    Ok(())
}

/// The last conv layer of `net`.
fn last_conv(net: &Net) -> Result<usize> {
    net.spec().last_conv().ok_or_else(|| anyhow::anyhow!("{} has no conv layer", net.spec().arch))
}

/// `b` units of the last conv layer's activation `act` of one image: its strongest unit
/// (`b = 1`, as python/zfnet_torch.py picks it), or the strongest unit of each of the first `b`
/// maps.
fn units(
    deconv: &zf_deconv::Deconvnet<'_>,
    trace: &zf_model::NetTrace,
    last: usize,
    act: &Tensor,
    b: usize,
) -> Result<Vec<zf_deconv::Unit>> {
    let (_, maps, h, w) = act.dims4()?;
    if b == 1 {
        let flat = act.flatten_all()?.argmax(0)?.to_scalar::<u32>()? as usize;
        return Ok(vec![zf_deconv::Unit { image: 0, channel: flat / (h * w), y: flat % (h * w) / w, x: flat % w }]);
    }
    (0..b).map(|c| Ok(deconv.strongest_layer(trace, last, 0, c % maps)?.0)).collect()
}

/// The median time of one forward pass of one image to the last conv layer (switches kept),
/// then `b` projections from it (see [`units`]).
fn project(net: &Net, x: &Tensor, b: usize, reps: usize, device: &Device) -> Result<f64> {
    let last = last_conv(net)?;
    let deconv = zf_deconv::Deconvnet::new(net);
    median_time::<anyhow::Error>(reps, || {
        let mut trace = zf_model::NetTrace::default();
        let act = net.forward_until(&x.narrow(0, 0, 1)?, last, &mut trace)?;
        let p = deconv.project_layer(&trace, last, &units(&deconv, &trace, last, &act, b)?)?;
        device.synchronize()?;
        drop(p);
        Ok(())
    })
}

/// The median time of `b` projections (see [`units`]) from one forward pass recorded once,
/// outside the timing: the deconvnet's walk down alone.
fn deconv(net: &Net, x: &Tensor, b: usize, reps: usize, device: &Device) -> Result<f64> {
    let last = last_conv(net)?;
    let deconv = zf_deconv::Deconvnet::new(net);
    let mut trace = zf_model::NetTrace::default();
    let act = net.forward_until(&x.narrow(0, 0, 1)?, last, &mut trace)?;
    device.synchronize()?;
    median_time::<anyhow::Error>(reps, || {
        let p = deconv.project_layer(&trace, last, &units(&deconv, &trace, last, &act, b)?)?;
        device.synchronize()?;
        drop(p);
        Ok(())
    })
}
