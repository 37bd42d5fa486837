//! `zfnet serve`: the explorer in the browser (zf-serve), on a network zfnet loads.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zf_data::{DataSpec, GeneratedConfig, MeanImage, Preprocess, Split};
use zf_model::Device;
use zf_serve::{Explorer, ExplorerParts, ServeConfig};

use crate::args::NetArgs;

/// Explore a network in the browser, like the Deep Visualization Toolbox: choose an image from
/// --data or upload one, see the top-5 classes and every channel of a layer, click a channel
/// for its deconvnet projection on the image and — with --index — its top-9 images and
/// projections over the data set (Fig. 2); ask for the occlusion map of a class (Fig. 7).
/// Arrow keys move between channels (left, right) and layers (up, down); the address states the
/// view (image, layer, channel), so a view can be shared and reloaded.
///
/// Listens on 127.0.0.1 (this machine only) unless --bind says otherwise. Everything the page
/// needs is in the binary: it works offline. Analyses run one per worker (default: one per
/// core); when --queue more are waiting, further requests get 503 with Retry-After. Uploads are
/// limited to 16 MiB and 40 megapixels. Any network zfnet loads: ZFNet, torchvision's AlexNet
/// and VGG.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet visualize --weights run/model.safetensors --data generated --maps 64 --out fig2\n  zfnet serve --weights run/model.safetensors --data generated --index fig2\n  zfnet serve --weights vgg16.pth --data imagenet/val --port 9000"
)]
pub struct Args {
    #[command(flatten)]
    net: NetArgs,
    /// Weights: a path or hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "W")]
    weights: String,
    /// Images to choose from: an image folder (its val/ split when it has one) or `generated`.
    #[arg(long, value_name = "DIR")]
    data: Option<String>,
    /// A Fig. 2 index for the top-9 of a channel: the folder `zfnet visualize --out DIR` wrote
    /// (on the same --data; `--maps N` sets how many channels per layer it holds).
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// The training set's per-pixel mean image, a path or hf://... (default: mean.safetensors
    /// beside the weights, ImageNet's channel means for torchvision's networks, else computed
    /// over --data).
    #[arg(long, value_name = "FILE")]
    mean: Option<String>,
    /// Class names, one per line, a path or hf://... (default: classes.txt beside the weights,
    /// else ImageNet's for torchvision's ImageNet networks, else the data set's, else numbers).
    #[arg(long, value_name = "FILE")]
    class_names: Option<String>,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080, value_name = "N")]
    port: u16,
    /// Address to listen on. Anything but a loopback address lets other machines use the
    /// explorer (and its CPU): a warning says so.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    bind: IpAddr,
    /// Analyses run at once (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Analyses that may wait for a worker before requests are refused with 503.
    #[arg(long, default_value_t = zf_serve::limits::QUEUE_DEFAULT, value_name = "N")]
    queue: usize,
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args, device: &Device) -> Result<()> {
    let net = args.net.load_any(&args.weights, device)?;
    let size = net.spec().input_size;
    let data = match &args.data {
        Some(d) => {
            let set =
                DataSpec::parse(d, &GeneratedConfig::default()).open(Split::Val, None, Preprocess::for_input(size))?;
            Some((set, d.clone()))
        }
        None => None,
    };
    let mean = match crate::args::net_mean(&net, &args.weights, args.mean.as_deref())? {
        Some(m) => m,
        None => match &data {
            Some((set, name)) => {
                tracing::info!("no --mean: computing the mean image over {name}'s {} images", set.len());
                MeanImage::compute(set.as_ref())?
            }
            None => bail!("no mean image for {}: give --mean FILE or --data DIR to compute it", args.weights),
        },
    };
    let n = net.spec().classes();
    let imagenet = zf_data::folder::IMAGENET_CLASSES.lines().count();
    let classes = match crate::args::classes_for(&args.weights, args.class_names.as_deref())? {
        Some(c) => c,
        None if net.spec().input_channel_scale.is_some() && n == imagenet => {
            zf_data::folder::IMAGENET_CLASSES.lines().map(String::from).collect()
        }
        None => match &data {
            Some((set, _)) if set.classes().len() == n => set.classes().to_vec(),
            _ => Vec::new(),
        },
    };
    let index = match &args.index {
        Some(dir) => Some(zf_probe::fig2_index::Fig2Index::open(dir, &net.spec().arch, size)?),
        None => None,
    };
    if let (Some(x), Some((_, name))) = (&index, &data) {
        if &x.doc().data != name {
            tracing::warn!(
                "the index was searched over {}, the images come from {name}: top-9 patches may not match",
                x.doc().data
            );
        }
    }
    let explorer = Explorer::new(ExplorerParts { net, weights: args.weights.clone(), mean, classes, data, index })?;
    let mut config = ServeConfig::local(args.port);
    config.addr = SocketAddr::new(args.bind, args.port);
    config.waiting = args.queue;
    if let Some(w) = args.workers {
        if w == 0 {
            bail!("--workers must be at least 1")
        }
        config.workers = w;
    }
    if !args.bind.is_loopback() {
        tracing::warn!("listening on {}: other machines can reach the explorer and use this CPU", args.bind);
    }
    zf_serve::server::run_blocking(&config, explorer, |addr| {
        println!("zfnet explorer on http://{addr}/ ({} workers, Ctrl-C stops)", config.workers);
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("cannot serve on {}", config.addr))
}
