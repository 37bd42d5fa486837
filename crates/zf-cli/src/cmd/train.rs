//! `zfnet train`, `zfnet eval`, `zfnet predict`: the paper's training and its measurements.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use zf_data::{Crops, DataSpec, GeneratedConfig, Loader, LoaderConfig, Preprocess, Split};
use zf_model::Device;
use zf_train::{Data, EpochReport, Observer, StepReport, TrainConfig};

use crate::progress::bar;

/// Train ZFNet with the paper's recipe (Sec. 3): SGD with momentum 0.9, learning rate divided
/// by 10 when validation error plateaus, dropout 0.5 in fc6/fc7, filter RMS renormalization.
///
/// The run directory gets run.json, metrics.jsonl (one line per step and per epoch),
/// checkpoint.safetensors (resume with --resume: the run continues to the same numbers),
/// model.safetensors (the latest weights, for --weights), mean.safetensors (the training set's
/// per-pixel mean) and snapshots/epoch-NNN.safetensors. Ctrl-C writes a checkpoint and exits.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet train --data generated --config tiny --out runs/tiny\n  zfnet train --data generated --config small --epochs 10 --out runs/small\n  zfnet train --data imagenet --config paper --device cuda --out runs/paper\n  zfnet train --out runs/paper --resume"
)]
pub struct Args {
    /// An ImageNet-layout folder with train/ and val/ class folders, or `generated` (the
    /// default).
    #[arg(long, value_name = "DIR")]
    data: Option<String>,
    /// Training preset: paper (batch 128, 70 epochs, the paper's network), small (the
    /// default), tiny.
    #[arg(long, value_name = "NAME")]
    config: Option<String>,
    /// Run directory.
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    #[arg(long, value_name = "B")]
    batch: Option<usize>,
    /// Initial learning rate.
    #[arg(long, value_name = "X")]
    lr: Option<f64>,
    /// Epochs without validation improvement before the learning rate is divided by 10.
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Weight initialization: paper (std 0.01), he, or a standard deviation.
    #[arg(long, value_name = "INIT")]
    init: Option<String>,
    /// Multiplies conv1's initial weights, and its renormalization radius with them (the CPU
    /// presets: 0.1, so the first layer starts small as under the paper's init; 1: as drawn).
    #[arg(long, value_name = "X")]
    conv1_init_scale: Option<f64>,
    /// Dropout probability in fc6 and fc7 while training (paper: 0.5).
    #[arg(long, value_name = "P")]
    dropout: Option<f64>,
    /// Switch off the filter RMS renormalization (the paper's Fig. 6 comparison).
    #[arg(long)]
    no_renorm: bool,
    /// Use the AlexNet-style first layer (11x11 stride 4; the paper's Fig. 6 comparison).
    #[arg(long)]
    alexnet_first_layer: bool,
    /// Feature maps of conv1..conv5, comma-separated (default: the preset's), e.g. a wider
    /// first layer for Fig. 6's per-filter statistics: 48,32,48,48,32.
    #[arg(long, value_name = "LIST", value_parser = parse_channels)]
    channels: Option<[usize; 5]>,
    /// Validate on the centre crop only (default of the preset otherwise; paper: ten crops).
    #[arg(long)]
    centre_crop_eval: bool,
    /// Seed of the initialization, data order, crops and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run in --out from its checkpoint, with the config and data it was started
    /// with (a run killed before its first checkpoint starts again from the beginning). Flags
    /// given with --resume must agree with the recorded run, except --epochs N above the
    /// recorded count, which extends the run.
    #[arg(long)]
    resume: bool,
    /// Generated data: training images (default 2000).
    #[arg(long, value_name = "N")]
    train_size: Option<usize>,
    /// Generated data: validation images (default 500).
    #[arg(long, value_name = "N")]
    val_size: Option<usize>,
    /// Generated data: clutter shapes per image.
    #[arg(long, value_name = "N")]
    clutter: Option<usize>,
}

/// The data a run trains on, as its flags give it; recorded in run.json (`data_spec`) so that
/// `--resume` makes the same sets again.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct DataArgs {
    data: String,
    train_size: usize,
    val_size: usize,
    clutter: Option<usize>,
}

impl DataArgs {
    const DEFAULT_TRAIN: usize = 2000;
    const DEFAULT_VAL: usize = 500;

    /// A new run's data before its flags: the generated set at the default sizes.
    fn default_generated() -> Self {
        Self { data: "generated".into(), train_size: Self::DEFAULT_TRAIN, val_size: Self::DEFAULT_VAL, clutter: None }
    }
}

/// A run ended by Ctrl-C (with its checkpoint written): `zfnet` exits with status 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// The train and validation sets named by `--data` (see [`DataSpec`]): the generated set in
/// `train_size` and `val_size` images, or a folder's train/ and val/.
pub fn datasets(data: &str, size: usize, gen: &GeneratedConfig, train_size: usize, val_size: usize) -> Result<Data> {
    let spec = DataSpec::parse(data, gen);
    let pre = Preprocess::for_input(size);
    let (train, val) = match &spec {
        DataSpec::Generated(_) => (Some(train_size), Some(val_size)),
        DataSpec::Folder(_) => (None, None),
    };
    let (train, val) = (spec.open(Split::Train, train, pre)?, spec.open(Split::Val, val, pre)?);
    if train.classes() != val.classes() {
        bail!("{data}: train/ and val/ have different class folders")
    }
    let description = match &spec {
        DataSpec::Generated(g) => {
            format!("generated (seed {}, clutter {}, {train_size} train, {val_size} val)", g.seed, g.clutter)
        }
        DataSpec::Folder(_) => format!("folder {data}"),
    };
    Ok(Data { description, train, val, spec: None })
}

struct Bars {
    bar: Option<ProgressBar>,
}

impl Observer for Bars {
    fn on_step(&mut self, s: &StepReport) {
        let pb = self.bar.get_or_insert_with(|| bar(s.batches as u64, &format!("epoch {}", s.epoch)));
        pb.set_position(s.batch as u64);
        pb.set_message(format!("epoch {} loss {:.3}", s.epoch, s.loss));
    }

    #[allow(clippy::print_stdout)]
    fn on_epoch(&mut self, e: &EpochReport) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        println!(
            "epoch {:>3}/{}: train loss {:.4}, val top-1 error {:.2}%, top-5 error {:.2}% ({}), lr {:.0e}, {:.0} images/s, {:.1}s",
            e.epoch,
            e.epochs,
            e.train_loss,
            100.0 * e.val.top1_err,
            100.0 * e.val.top5_err,
            if e.val.ten_crop { "10 crops" } else { "centre crop" },
            e.lr,
            e.images_per_s,
            e.seconds
        );
    }
}

/// What a run is made of: its training config and its data, as run.json records them.
#[derive(Clone)]
struct Setup {
    config: TrainConfig,
    data: DataArgs,
}

/// One flag that sets part of a [`Setup`]: for a new run it overrides the preset; with
/// `--resume` it must agree with the recorded run. Each flag is handled here once.
struct Flag {
    name: &'static str,
    /// Sets the flag's part of the setup when it was given; `Ok(false)` when it was not.
    apply: fn(&Args, &mut Setup) -> Result<bool>,
    /// That part of a setup, as text ("64", "no renormalization").
    shown: fn(&Setup) -> String,
    /// A switch: its clash names only the flag (`--no-renorm (the run has ...)`).
    switch: bool,
}

/// `--channels`: five positive counts, conv1..conv5.
fn parse_channels(v: &str) -> Result<[usize; 5], String> {
    let counts: Vec<usize> = v
        .split(',')
        .map(|c| c.trim().parse::<usize>().ok().filter(|&c| c > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("`{v}`: expected five positive counts, conv1..conv5, e.g. 48,32,48,48,32"))?;
    counts.try_into().map_err(|c: Vec<usize>| format!("`{v}`: {} counts, expected five (conv1..conv5)", c.len()))
}

/// Sets `*slot` to `v` when the flag was given.
fn set<T: Clone>(given: &Option<T>, slot: &mut T) -> bool {
    if let Some(v) = given {
        *slot = v.clone();
    }
    given.is_some()
}

/// Every flag of `zfnet train` that says what the run is, but `--epochs` (a new run's length,
/// or, with `--resume`, an extension).
const FLAGS: &[Flag] = &[
    Flag {
        name: "--config",
        apply: |a, s| Ok(set(&a.config, &mut s.config.name)),
        shown: |s| s.config.name.clone(),
        switch: false,
    },
    Flag {
        name: "--batch",
        apply: |a, s| Ok(set(&a.batch, &mut s.config.batch)),
        shown: |s| s.config.batch.to_string(),
        switch: false,
    },
    Flag {
        name: "--lr",
        apply: |a, s| Ok(set(&a.lr, &mut s.config.lr)),
        shown: |s| s.config.lr.to_string(),
        switch: false,
    },
    Flag {
        name: "--patience",
        apply: |a, s| Ok(set(&a.patience, &mut s.config.patience)),
        shown: |s| s.config.patience.to_string(),
        switch: false,
    },
    Flag {
        name: "--init",
        apply: |a, s| {
            let init = a.init.as_deref().map(zf_model::init::Init::parse).transpose()?;
            Ok(set(&init, &mut s.config.init))
        },
        shown: |s| format!("{:?}", s.config.init),
        switch: false,
    },
    Flag {
        name: "--conv1-init-scale",
        apply: |a, s| Ok(set(&a.conv1_init_scale, &mut s.config.conv1_init_scale)),
        shown: |s| s.config.conv1_init_scale.to_string(),
        switch: false,
    },
    Flag {
        name: "--seed",
        apply: |a, s| Ok(set(&a.seed, &mut s.config.seed)),
        shown: |s| s.config.seed.to_string(),
        switch: false,
    },
    Flag {
        name: "--dropout",
        apply: |a, s| {
            if let Some(p) = a.dropout.filter(|p| !(0.0..1.0).contains(p)) {
                bail!("--dropout must be in [0, 1), got {p}")
            }
            Ok(set(&a.dropout, &mut s.config.model.dropout))
        },
        shown: |s| s.config.model.dropout.to_string(),
        switch: false,
    },
    Flag {
        name: "--no-renorm",
        apply: |a, s| {
            if a.no_renorm {
                s.config.renorm = None;
            }
            Ok(a.no_renorm)
        },
        shown: |s| if s.config.renorm.is_some() { "filter renormalization" } else { "no renormalization" }.into(),
        switch: true,
    },
    Flag {
        name: "--alexnet-first-layer",
        apply: |a, s| {
            if a.alexnet_first_layer {
                s.config.model = s.config.model.clone().with_first_layer(zf_model::FirstLayer::AlexNet);
            }
            Ok(a.alexnet_first_layer)
        },
        shown: |s| match s.config.model.first_layer {
            zf_model::FirstLayer::Zf => "ZFNet's first layer".into(),
            zf_model::FirstLayer::AlexNet => "the AlexNet-style first layer".into(),
        },
        switch: true,
    },
    Flag {
        name: "--channels",
        apply: |a, s| Ok(set(&a.channels, &mut s.config.model.channels)),
        shown: |s| s.config.model.channels.map(|c| c.to_string()).join(","),
        switch: false,
    },
    Flag {
        name: "--centre-crop-eval",
        apply: |a, s| {
            if a.centre_crop_eval {
                s.config.ten_crop_eval = false;
            }
            Ok(a.centre_crop_eval)
        },
        shown: |s| if s.config.ten_crop_eval { "ten-crop validation" } else { "centre-crop validation" }.into(),
        switch: true,
    },
    Flag {
        name: "--data",
        apply: |a, s| Ok(set(&a.data, &mut s.data.data)),
        shown: |s| s.data.data.clone(),
        switch: false,
    },
    Flag {
        name: "--train-size",
        apply: |a, s| Ok(set(&a.train_size, &mut s.data.train_size)),
        shown: |s| s.data.train_size.to_string(),
        switch: false,
    },
    Flag {
        name: "--val-size",
        apply: |a, s| Ok(set(&a.val_size, &mut s.data.val_size)),
        shown: |s| s.data.val_size.to_string(),
        switch: false,
    },
    Flag {
        name: "--clutter",
        apply: |a, s| Ok(set(&a.clutter.map(Some), &mut s.data.clutter)),
        shown: |s| s.data.clutter.map_or("the default".into(), |c| c.to_string()),
        switch: false,
    },
];

/// The setup the flags describe, for a new run: the preset (`--config`, else small) and the
/// default data, each given flag applied.
fn setup_from_flags(args: &Args) -> Result<Setup> {
    let mut config = TrainConfig::preset(args.config.as_deref().unwrap_or("small"))?;
    if let Some(e) = args.epochs {
        config = config.with_epochs(e);
    }
    let mut setup = Setup { config, data: DataArgs::default_generated() };
    for flag in FLAGS {
        (flag.apply)(args, &mut setup)?;
    }
    Ok(setup)
}

/// The recorded run's setup for `--resume`: every flag given must agree with the record, except
/// `--epochs` above the recorded count, which extends the run (its learning-rate schedule
/// continues from the checkpoint; the last epoch gets a snapshot).
fn resumed(args: &Args, record: zf_train::RunRecord) -> Result<Setup> {
    let data = match record.data_spec {
        Some(v) => serde_json::from_value::<DataArgs>(v).context("run.json: `data_spec` is not zfnet train's")?,
        None => bail!(
            "{}: run.json does not record how its data was made (a run from an older zfnet): start a new run",
            args.out.display()
        ),
    };
    let mut setup = Setup { config: record.config, data };
    let mut clash = Vec::new();
    for flag in FLAGS {
        let mut given = setup.clone();
        if (flag.apply)(args, &mut given)? && (flag.shown)(&given) != (flag.shown)(&setup) {
            let value = if flag.switch { String::new() } else { format!(" {}", (flag.shown)(&given)) };
            clash.push(format!("{}{value} (the run has {})", flag.name, (flag.shown)(&setup)));
        }
    }
    let c = &mut setup.config;
    if let Some(e) = args.epochs {
        if e < c.epochs {
            clash.push(format!("--epochs {e} (the run has {}; a run can be extended, not shortened)", c.epochs));
        } else if e > c.epochs {
            tracing::info!("extending the run from {} to {e} epochs", c.epochs);
            c.epochs = e;
            if !c.snapshots.contains(&e) {
                c.snapshots.push(e);
            }
        }
    }
    if !clash.is_empty() {
        bail!(
            "--resume continues {} as it was started; these flags disagree with it: {}. Drop them, or start a new run in another folder",
            args.out.display(),
            clash.join(", ")
        )
    }
    Ok(setup)
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args, device: &Device) -> Result<()> {
    let Setup { mut config, data: data_args } = if args.resume {
        let dir = zf_train::RunDir::open(&args.out)
            .map_err(|e| anyhow::anyhow!("nothing to resume: {e}; start it without --resume"))?;
        resumed(&args, dir.record()?)?
    } else {
        setup_from_flags(&args)?
    };
    if data_args.data == "generated" && config.model.classes != zf_data::Class::ALL.len() {
        config.model = config.model.with_classes(zf_data::Class::ALL.len());
    }
    let mut gen = GeneratedConfig { seed: config.seed, ..Default::default() };
    if let Some(c) = data_args.clutter {
        gen.clutter = c;
    }
    let mut data = datasets(&data_args.data, config.model.input_size, &gen, data_args.train_size, data_args.val_size)?;
    data.spec = Some(serde_json::to_value(&data_args)?);
    if data.train.classes().len() != config.model.classes {
        config.model = config.model.with_classes(data.train.classes().len());
    }
    std::fs::create_dir_all(&args.out)?;
    zf_data::folder::write_classes(&args.out.join("classes.txt"), data.train.classes())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    tracing::info!(
        "training {} ({} parameters) on {} for {} epochs, batch {}",
        config.name,
        config.model.table()?.total_params(),
        data.description,
        config.epochs,
        config.batch
    );
    let summary = zf_train::train(
        &config,
        &data,
        &args.out,
        args.resume,
        crate::REVISION,
        device,
        &stop,
        &mut Bars { bar: None },
    )?;
    if summary.skipped > 0 {
        tracing::warn!("{} images could not be read and were skipped", summary.skipped);
    }
    if summary.interrupted {
        println!(
            "interrupted at step {}: resume with `zfnet train --out {} --resume`",
            summary.steps,
            args.out.display()
        );
        return Err(Interrupted.into());
    } else {
        println!(
            "done in {:.1}s: {} epochs, {} steps; weights in {}",
            summary.seconds,
            summary.epochs_done,
            summary.steps,
            args.out.join("model.safetensors").display()
        );
    }
    Ok(())
}

/// Measure top-1 and top-5 error on a validation set, with the softmax averaged over the ten
/// crops (--ten-crop) or on the centre crop. Prints the numbers and writes them as JSON.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet eval --weights runs/small/model.safetensors --data generated --mean runs/small/mean.safetensors --ten-crop"
)]
pub struct EvalArgs {
    #[arg(long, value_name = "W")]
    weights: String,
    /// A validation folder (class sub-folders; an ImageNet root's val/ is used), or `generated`.
    #[arg(long, value_name = "DIR")]
    data: String,
    /// The training set's mean image, a path or hf://... (default: mean.safetensors beside the
    /// weights).
    #[arg(long, value_name = "FILE")]
    mean: Option<String>,
    /// Average the softmax over the ten crops (else the centre crop).
    #[arg(long)]
    ten_crop: bool,
    #[arg(long, default_value_t = 64, value_name = "B")]
    batch: usize,
    /// Generated data: validation images and seed.
    #[arg(long, default_value_t = 500, value_name = "N")]
    val_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the numbers here as JSON.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[allow(clippy::print_stdout)]
pub fn eval(args: EvalArgs, device: &Device) -> Result<()> {
    let net = crate::args::NetArgs::default().load_any(&args.weights, device)?;
    let size = net.spec().input_size;
    let mean = crate::cmd::analysis::mean_for_net(&net, &args.weights, args.mean.as_deref())?;
    let spec = DataSpec::parse(&args.data, &GeneratedConfig { seed: args.seed, ..Default::default() });
    let limit = spec.generated().map(|_| args.val_size);
    let set = spec.open(Split::Val, limit, Preprocess::for_input(size))?;
    let crops = if args.ten_crop { Crops::Ten } else { Crops::Centre };
    let loader = Loader::new(set, Some(&mean), LoaderConfig::eval(args.batch, crops))?;
    let e = zf_train::evaluate(&net, &loader, device)?;
    println!(
        "top-1 error {:.2}%, top-5 error {:.2}% on {} images ({}){}",
        100.0 * e.top1_err,
        100.0 * e.top5_err,
        e.images,
        if e.ten_crop { "softmax averaged over 10 crops" } else { "centre crop" },
        if loader.skipped() > 0 { format!(", {} unreadable images skipped", loader.skipped()) } else { String::new() }
    );
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        zf_data::write_atomic(out, &serde_json::to_vec_pretty(&e)?)?;
    }
    Ok(())
}

/// Print the most probable classes of images (centre crop, the training set's mean subtracted).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  zfnet predict --weights runs/small/model.safetensors data/photos/*.jpg --top 3")]
pub struct PredictArgs {
    #[arg(long, value_name = "W")]
    weights: String,
    /// Image files or folders of images.
    #[arg(required = true, value_name = "IMAGES")]
    images: Vec<PathBuf>,
    #[arg(long, default_value_t = 5, value_name = "K")]
    top: usize,
    /// Class names, one per line, a path or hf://... (default: classes.txt beside the weights).
    #[arg(long, value_name = "FILE")]
    classes: Option<String>,
    /// The training set's mean image, a path or hf://... (default: mean.safetensors beside the
    /// weights).
    #[arg(long, value_name = "FILE")]
    mean: Option<String>,
}

#[allow(clippy::print_stdout)]
pub fn predict(args: PredictArgs, device: &Device) -> Result<()> {
    let net = crate::args::NetArgs::default().load_any(&args.weights, device)?;
    let size = net.spec().input_size;
    let mean = crate::cmd::analysis::mean_for_net(&net, &args.weights, args.mean.as_deref())?;
    let pre = Preprocess::for_input(size);
    let classes = net.spec().classes();
    let imagenet = zf_data::folder::IMAGENET_CLASSES.lines().count();
    let names = match crate::args::classes_for(&args.weights, args.classes.as_deref())? {
        Some(names) => names,
        // torchvision's ImageNet networks: ImageNet's class names.
        None if net.spec().input_channel_scale.is_some() && classes == imagenet => {
            zf_data::folder::IMAGENET_CLASSES.lines().map(String::from).collect()
        }
        None => (0..classes).map(|i| format!("class {i}")).collect(),
    };
    for path in zf_data::folder::list_images(&args.images)? {
        let img = match pre.load(&path) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("skipped: {e}");
                continue;
            }
        };
        let x = zf_data::pick::centre_crop(&pre, &img, &mean, device)?.unsqueeze(0)?;
        let p: Vec<f32> = zf_model::network::softmax(&net.forward(&x)?)?.flatten_all()?.to_vec1()?;
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let top: Vec<String> = order
            .iter()
            .take(args.top)
            .map(|&i| format!("{} {:.1}%", names.get(i).map(String::as_str).unwrap_or("?"), 100.0 * p[i]))
            .collect();
        println!("{}: {}", path.display(), top.join(", "));
    }
    Ok(())
}
