//! `zfnet bench`: throughput of the network, printed as JSON lines in the format of
//! shared/bench/torch_zfnet.py, so that both can be compared side by side.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use zf_model::init::{init_net, Init};
use zf_model::ZfConfig;

/// Time the network on random inputs and print one JSON object per measurement:
/// {"bench", "impl", "threads", "width", "batch", "median_s", "images_per_s"}.
///
/// Threads follow RAYON_NUM_THREADS (all cores when unset).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet bench\n  RAYON_NUM_THREADS=2 zfnet bench --what forward --width 0.25 --batch 128 --reps 5"
)]
pub struct Args {
    /// What to time, comma-separated: forward.
    #[arg(long, default_value = "forward", value_name = "LIST")]
    what: String,
    /// Width multiplier of the paper's network.
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    width: f64,
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
    let config = ZfConfig::paper().with_width(args.width);
    let net = init_net(&config, Init::Paper, 0, device)?;
    let s = config.input_size;
    let x = Tensor::randn(0f32, 50., (args.batch, 3, s, s), device)?;
    let threads = candle_core::utils::get_num_threads();
    for what in args.what.split(',').map(str::trim) {
        let median = match what {
            "forward" => median_time(args.reps, || {
                let y = net.forward(&x)?;
                device.synchronize()?;
                drop(y);
                Ok(())
            })?,
            other => bail!("unknown benchmark `{other}`: expected forward"),
        };
        let line = serde_json::json!({
            "bench": what,
            "impl": format!("zfnet {} (candle)", env!("CARGO_PKG_VERSION")),
            "threads": threads,
            "width": args.width,
            "batch": args.batch,
            "median_s": (median * 1e5).round() / 1e5,
            "images_per_s": (args.batch as f64 / median * 100.0).round() / 100.0,
        });
        println!("{line}");
    }
    Ok(())
}

/// One warm-up run, then the median of `reps` timed runs, in seconds.
fn median_time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
