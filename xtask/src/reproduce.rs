//! `cargo xtask reproduce-paper`: every experiment of the paper, in resumable stages, driven
//! through the `zfnet` binary, ending in a report (see [`crate::report`]).
//!
//! Stages (each writes its folder under the output directory and, when it finishes,
//! `stages/<name>.json` with its wall time; a finished stage is skipped unless `--force`):
//! data → train (ZFNet, with snapshots) → ablations (AlexNet-style first layer; no filter
//! renormalization) → eval → fig2 (top-9 projections) → fig4 (evolution) → fig5 (invariance) →
//! fig6 (first layers) → fig7 (occlusion) → table1 (correspondence) → table7 (layer probes) →
//! report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use zf_io::StageTime;

use crate::stages::{Cmd, On, Parts, Training};

/// The error of a stage stopped by Ctrl-C: the run stops, the stage is not marked done, and
/// `cargo xtask reproduce-paper` exits with status 130.
pub const INTERRUPTED: &str = "interrupted by Ctrl-C: run the same command again to resume";

static SIGINT_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether Ctrl-C was pressed (see [`catch_ctrl_c`]).
pub fn interrupted() -> bool {
    SIGINT_SEEN.load(std::sync::atomic::Ordering::SeqCst)
}

/// Lets Ctrl-C reach the running `zfnet` (which writes its checkpoint and exits with 130)
/// instead of killing this process first: the first Ctrl-C is noted and the stage ends as
/// [`INTERRUPTED`]; a second one exits at once.
pub fn catch_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if SIGINT_SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

/// Everything a profile fixes: data, training and analysis sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Why these sizes (for the report).
    pub rationale: &'static str,
    /// Generated data (ignored with `--data`): training and validation images per class,
    /// clutter shapes per image.
    pub per_class: usize,
    pub val_per_class: usize,
    pub clutter: usize,
    /// `zfnet train --config`.
    pub train_config: &'static str,
    /// Feature maps of conv1..conv5 instead of the preset's (`zfnet train --channels`).
    pub channels: Option<[usize; 5]>,
    /// Epochs of ZFNet and of both Fig. 6 ablations: one budget for the three, so that their
    /// comparison is fair.
    pub epochs: usize,
    /// Overrides of the preset (None: the preset's).
    pub lr: Option<f64>,
    pub batch: Option<usize>,
    pub dropout: Option<f64>,
    pub patience: Option<usize>,
    /// Fig. 2: maps per layer and activations per map.
    pub maps: usize,
    pub top: usize,
    /// Images searched by Fig. 2 and Fig. 4.
    pub search: usize,
    /// Images of Fig. 5, Fig. 7 and Table 1.
    pub invariance_images: usize,
    pub occlusion_images: usize,
    /// The gray square's side and stride at 224 pixels (the paper's 48 and 8), scaled with the
    /// network's input size when run.
    pub occlusion_size: usize,
    pub occlusion_stride: usize,
    pub correspondence_images: usize,
    /// Side of the square occluding each part at 224 pixels, scaled with the input size.
    pub correspondence_box: usize,
    /// Table 7: training and test images of the probes (generated: images per held-out class
    /// in each transfer split).
    pub probe_train: usize,
    pub probe_test: usize,
    pub transfer_per_class: usize,
}

impl Profile {
    /// The embedded default: the generated data set on a 2-core CPU in about 20 minutes.
    pub fn default_cpu() -> Self {
        Self {
            name: "default",
            rationale: "the generated data set on a 2-core CPU within about 20 minutes: the eighth-width network on \
                        112-pixel crops with a first layer of 48 filters (so that Fig. 6's per-filter tests compare \
                        48 filters a bank; conv1 reads 3 channels, so it is cheap), He initialization with inputs \
                        scaled to unit variance, no dropout and light clutter, because measured runs of the paper's \
                        own init stay at chance for tens of thousands of images (see the report's departures); \
                        500 validation images a class, so that Table 2's paired comparison sees 5000 images",
            per_class: 1000,
            val_per_class: 500,
            clutter: 2,
            train_config: "tiny",
            channels: Some([48, 32, 48, 48, 32]),
            epochs: 10,
            lr: Some(0.01),
            batch: Some(32),
            dropout: Some(0.0),
            patience: Some(2),
            maps: 8,
            top: 9,
            search: 1000,
            invariance_images: 50,
            occlusion_images: 100,
            occlusion_size: 48,
            occlusion_stride: 8,
            correspondence_images: 100,
            correspondence_box: 48,
            probe_train: 1000,
            probe_test: 500,
            transfer_per_class: 200,
        }
    }

    /// The same stages, tiny, in a few minutes (the test suite runs it).
    pub fn quick() -> Self {
        Self {
            name: "quick",
            rationale: "every stage at the smallest sizes that exercise it, for the test suite: the numbers are not \
                        meant to show the paper's effects",
            per_class: 6,
            val_per_class: 3,
            epochs: 2,
            batch: Some(10),
            maps: 2,
            top: 3,
            search: 30,
            invariance_images: 10,
            occlusion_images: 1,
            occlusion_stride: 32,
            correspondence_images: 3,
            probe_train: 60,
            probe_test: 30,
            transfer_per_class: 8,
            ..Self::default_cpu()
        }
    }

    /// The paper's network and recipe on an ImageNet-layout folder (`--data`).
    pub fn paper() -> Self {
        Self {
            name: "paper",
            rationale: "the paper's network and training recipe (Sec. 3) on the given ImageNet-layout folder",
            per_class: 0,
            val_per_class: 0,
            clutter: 0,
            train_config: "paper",
            channels: None,
            epochs: 70,
            lr: None,
            batch: None,
            dropout: None,
            patience: None,
            maps: 16,
            top: 9,
            search: 50_000,
            invariance_images: 5,
            occlusion_images: 5,
            occlusion_size: 48,
            occlusion_stride: 8,
            correspondence_images: 5,
            correspondence_box: 48,
            probe_train: 3000,
            probe_test: 3000,
            transfer_per_class: 0,
        }
    }

    pub fn named(name: &str) -> Result<Self, String> {
        match name {
            "default" => Ok(Self::default_cpu()),
            "quick" => Ok(Self::quick()),
            "paper" => Ok(Self::paper()),
            other => Err(format!("unknown profile `{other}`: expected default, quick or paper")),
        }
    }
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub profile: Profile,
    pub out: PathBuf,
    pub force: bool,
    /// An ImageNet-layout folder instead of the generated data.
    pub data: Option<PathBuf>,
    /// Trained weights: skip training and the ablations.
    pub weights: Option<String>,
    /// The zfnet binary (default: build it in release mode through `$CARGO`).
    pub zfnet: Option<PathBuf>,
    pub seed: u64,
    /// Extra arguments for every zfnet command (e.g. `--device cuda`).
    pub device: Option<String>,
}

/// The run: where things are, and how to call zfnet.
#[derive(Debug)]
pub struct Run {
    pub opts: Options,
    pub zfnet: PathBuf,
    pub times: Vec<StageTime>,
    /// The given weights' network when it is not ZFNet (`vgg16_bn`, `alexnet`), from
    /// `zfnet info --weights W --json`; `None` for ZFNet.
    pub network: Option<Network>,
}

/// A network other than ZFNet, as `zfnet info` describes its spec.
#[derive(Clone, Debug)]
pub struct Network {
    pub arch: String,
    pub input_size: usize,
}

impl Run {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.opts.out.join(rel)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.opts.data.clone().unwrap_or_else(|| self.path("data"))
    }

    pub fn val_dir(&self) -> PathBuf {
        let d = self.data_dir();
        if d.join("val").is_dir() {
            d.join("val")
        } else {
            d
        }
    }

    /// The main network's weights.
    pub fn weights(&self) -> String {
        self.opts.weights.clone().unwrap_or_else(|| self.path("runs/zfnet/model.safetensors").display().to_string())
    }

    /// The mean image for the main network.
    pub fn mean(&self) -> PathBuf {
        match &self.opts.weights {
            Some(w) => Path::new(w).with_file_name("mean.safetensors"),
            None => self.path("runs/zfnet/mean.safetensors"),
        }
    }

    /// The main network's input size: from the run's run.json, or from the `zfnet.config`
    /// metadata in the weights file's safetensors header (another network's: its spec's).
    pub fn input_size(&self) -> Option<usize> {
        if let Some(n) = &self.network {
            return Some(n.input_size);
        }
        if let Some(w) = &self.opts.weights {
            let config = safetensors_metadata(Path::new(w), "zfnet.config")?;
            let v: serde_json::Value = serde_json::from_str(&config).ok()?;
            return v["input_size"].as_u64().map(|v| v as usize);
        }
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path("runs/zfnet/run.json")).ok()?).ok()?;
        run["config"]["model"]["input_size"].as_u64().map(|v| v as usize)
    }

    pub fn trains(&self) -> bool {
        self.opts.weights.is_none()
    }

    /// A mean image `m` for the commands: always for ZFNet; for another network only when the
    /// file exists (else the commands take ImageNet's channel means, as torchvision's networks
    /// were trained with).
    fn mean_if_used(&self, m: PathBuf) -> Option<PathBuf> {
        (self.network.is_none() || m.is_file()).then_some(m)
    }

    /// The main network on `data`.
    fn on(&self, data: PathBuf) -> On {
        On { weights: self.weights(), mean: self.mean_if_used(self.mean()), data }
    }

    /// What `zfnet info --weights W --json` says of the given weights: `Some` for a network
    /// other than ZFNet.
    fn network_of(&self, weights: &str) -> Result<Option<Network>, String> {
        let out = Command::new(&self.zfnet)
            .args(["info", "--weights", weights, "--json"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.zfnet.display()))?;
        if !out.status.success() {
            return Err(format!("`zfnet info --weights {weights}` failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("`zfnet info --json` printed no JSON: {e}"))?;
        Ok(v.get("spec").map(|spec| Network {
            arch: spec["arch"].as_str().unwrap_or("?").to_string(),
            input_size: spec["input_size"].as_u64().unwrap_or(224) as usize,
        }))
    }

    /// Runs the `zfnet` command `cmd` with the device flag, inheriting the terminal (progress
    /// bars). A command stopped by Ctrl-C (exit status 130, or a SIGINT seen here while it ran)
    /// is [`INTERRUPTED`], so that its stage is not marked done.
    pub fn zfnet(&self, cmd: &Cmd) -> Result<(), String> {
        let args = cmd.args();
        let mut cmd = Command::new(&self.zfnet);
        cmd.args(&args);
        if let Some(d) = &self.opts.device {
            cmd.args(["--device", d]);
        }
        let status = cmd.status().map_err(|e| format!("cannot run {}: {e}", self.zfnet.display()))?;
        if status.code() == Some(130) || interrupted() {
            return Err(INTERRUPTED.into());
        }
        if status.success() {
            Ok(())
        } else {
            Err(format!("`zfnet {}` failed ({status})", args.join(" ")))
        }
    }

    /// Runs `f` as stage `name` unless it finished before.
    #[allow(clippy::print_stderr)]
    fn stage(&mut self, name: &str, f: impl FnOnce(&Run) -> Result<(), String>) -> Result<(), String> {
        let marker = self.path(&format!("stages/{name}.json"));
        if marker.exists() && !self.opts.force {
            let seconds = std::fs::read(&marker)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["seconds"].as_f64())
                .unwrap_or(0.0);
            eprintln!("== {name}: done before ({seconds:.1} s), skipped (--force reruns it)");
            self.times.push(StageTime { stage: name.into(), seconds, skipped: true });
            return Ok(());
        }
        eprintln!("== {name} ...");
        let t = Instant::now();
        f(self).map_err(|e| {
            if e.contains(INTERRUPTED) || interrupted() {
                INTERRUPTED.to_string()
            } else {
                format!("stage {name}: {e}")
            }
        })?;
        let seconds = t.elapsed().as_secs_f64();
        write(
            &marker,
            &serde_json::to_vec_pretty(&serde_json::json!({ "stage": name, "seconds": seconds })).unwrap_or_default(),
        )?;
        eprintln!("== {name}: {seconds:.1} s");
        self.times.push(StageTime { stage: name.into(), seconds, skipped: false });
        Ok(())
    }
}

/// A metadata entry of a safetensors file (its header: an 8-byte little-endian length, then
/// JSON with `__metadata__`).
pub fn safetensors_metadata(path: &Path, key: &str) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    v["__metadata__"][key].as_str().map(String::from)
}

/// Writes a file atomically (zf-io's, as the crates write: never a half-written marker or
/// report file), creating its folder.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    zf_io::write_atomic(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The `zfnet train` command of one run: resumed when an earlier invocation left a checkpoint,
/// else a new run (its folder cleared) with the profile's recipe.
fn train_cmd(run: &Run, dir: &str, ablation: Option<&'static str>) -> Cmd {
    let p = &run.opts.profile;
    let out = run.path(dir);
    let how = if out.join("checkpoint.safetensors").exists() && !run.opts.force {
        Training::Resume
    } else {
        if out.exists() {
            let _ = std::fs::remove_dir_all(&out);
        }
        Training::New {
            config: p.train_config,
            epochs: p.epochs,
            seed: run.opts.seed,
            channels: p.channels,
            lr: p.lr,
            batch: p.batch,
            dropout: p.dropout,
            patience: p.patience,
            ablation,
        }
    };
    Cmd::Train { data: run.data_dir(), out, how }
}

/// Runs every stage, then writes the report. Returns the report's folder.
#[allow(clippy::print_stderr)]
pub fn reproduce(root: &Path, opts: Options) -> Result<PathBuf, String> {
    let started = Instant::now();
    if opts.profile.name == "paper" && opts.data.is_none() {
        return Err("--profile paper needs --data DIR, an ImageNet-layout folder with train/ and val/".into());
    }
    let zfnet = match &opts.zfnet {
        Some(z) => z.clone(),
        None => build(root)?,
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let mut run = Run { opts, zfnet, times: vec![], network: None };
    if let Some(w) = run.opts.weights.clone() {
        run.network = run.network_of(&w)?;
    }
    let p = run.opts.profile.clone();
    eprintln!(
        "reproduce-paper: profile {} -> {}{}",
        p.name,
        run.opts.out.display(),
        if run.opts.force { " (--force: every stage reruns)" } else { "" }
    );

    if run.opts.data.is_none() {
        run.stage("data", |r| {
            let out = r.path("data");
            let _ = std::fs::remove_dir_all(&out);
            r.zfnet(&Cmd::Generate {
                out,
                per_class: p.per_class,
                val_per_class: p.val_per_class,
                clutter: p.clutter,
                transfer_per_class: p.transfer_per_class,
                faces: p.correspondence_images,
                seed: r.opts.seed,
            })
        })?;
    }
    if run.trains() {
        run.stage("train", |r| r.zfnet(&train_cmd(r, "runs/zfnet", None)))?;
        run.stage("train-alexnet", |r| r.zfnet(&train_cmd(r, "runs/alexnet", Some("--alexnet-first-layer"))))?;
        run.stage("train-no-renorm", |r| r.zfnet(&train_cmd(r, "runs/no-renorm", Some("--no-renorm"))))?;
    }
    let nets: Vec<(&str, String)> = if run.trains() {
        vec![
            ("zfnet", run.path("runs/zfnet/model.safetensors").display().to_string()),
            ("alexnet", run.path("runs/alexnet/model.safetensors").display().to_string()),
            ("no-renorm", run.path("runs/no-renorm/model.safetensors").display().to_string()),
        ]
    } else {
        vec![("zfnet", run.weights())]
    };
    let mean = run.mean();
    run.stage("eval", |r| {
        for (name, w) in &nets {
            let m = Path::new(w).with_file_name("mean.safetensors");
            r.zfnet(&Cmd::Eval {
                weights: w.clone(),
                data: r.data_dir(),
                mean: r.mean_if_used(m),
                out: r.path(&format!("eval/{name}.json")),
            })?;
        }
        Ok(())
    })?;
    run.stage("fig2", |r| {
        // The paper's layers 1-5: ZFNet's conv1..conv5; another network's conv before each pool
        // (visualize's default).
        r.zfnet(&Cmd::Visualize {
            on: r.on(r.val_dir()),
            layers: None,
            maps: p.maps,
            top: p.top,
            limit: p.search,
            out: r.path("fig2"),
        })
    })?;
    if run.trains() {
        run.stage("fig4", |r| {
            r.zfnet(&Cmd::Evolution {
                run: r.path("runs/zfnet"),
                data: r.data_dir(),
                limit: p.search,
                out: r.path("fig4"),
            })
        })?;
    }
    run.stage("fig5", |r| {
        r.zfnet(&Cmd::Invariance { on: r.on(r.data_dir()), images: p.invariance_images, out: r.path("fig5") })
    })?;
    // Fig. 6 compares ZFNet's first layers (and reads ZFNet's files); another network's run
    // skips it and the report says why its claims are not testable.
    if let Some(n) = &run.network {
        eprintln!("== fig6: skipped — {} is not ZFNet: Fig. 6 compares ZFNet's first layers", n.arch);
    }
    let zfnet_only = run.network.is_none();
    run.stage("fig6", |r| {
        if !zfnet_only {
            return Ok(());
        }
        r.zfnet(&Cmd::Filters {
            data: r.data_dir(),
            mean: mean.clone(),
            banks: nets.iter().map(|(n, w)| (n.to_string(), w.clone())).collect(),
            out: r.path("fig6"),
        })?;
        // Layer-2 projections of each first layer (the paper's Fig. 6 (b)-(e)).
        for (name, w) in &nets {
            let on = On {
                weights: w.clone(),
                mean: Some(Path::new(w).with_file_name("mean.safetensors")),
                data: r.val_dir(),
            };
            r.zfnet(&Cmd::Visualize {
                on,
                layers: Some("2".into()),
                maps: p.maps,
                top: p.top,
                limit: p.search,
                out: r.path(&format!("fig6/layer2-{name}")),
            })?;
        }
        Ok(())
    })?;
    // Pixel sizes are given at 224 and scaled to the network's input.
    let px = |r: &Run, v: usize| -> usize {
        let size = r.input_size().unwrap_or(224);
        ((v * size) as f64 / 224.0).round().max(1.0) as usize
    };
    run.stage("fig7", |r| {
        r.zfnet(&Cmd::Occlusion {
            on: r.on(r.data_dir()),
            images: p.occlusion_images,
            size: px(r, p.occlusion_size),
            stride: px(r, p.occlusion_stride),
            out: r.path("fig7"),
        })
    })?;
    let generated = run.opts.data.is_none();
    // Table 1 needs part boxes: the generated faces' annotations, or DATA/boxes.json for a
    // folder (`zfnet correspondence --help` gives its format); without them it is skipped.
    let boxes = run.data_dir().join("boxes.json");
    let has_parts =
        generated || boxes.is_file() || run.data_dir().join("val").is_dir() && has_annotations(&run.val_dir());
    if !has_parts {
        eprintln!(
            "== table1: skipped — {} has no part annotations (add {} to run it)",
            run.data_dir().display(),
            boxes.display()
        );
    }
    run.stage("table1", |r| {
        if !has_parts {
            return Ok(());
        }
        let parts = if generated {
            // Aligned frontal faces, as the paper's five dog faces (`zfnet data generate`).
            Parts::Faces
        } else if boxes.is_file() {
            Parts::Boxes(boxes.clone())
        } else {
            Parts::Annotations
        };
        r.zfnet(&Cmd::Correspondence {
            on: r.on(r.data_dir()),
            parts,
            images: p.correspondence_images,
            box_size: px(r, p.correspondence_box),
            out: r.path("table1"),
        })
    })?;
    run.stage("table7", |r| {
        // Transfer: classes the network never trained on (the generated set's held-out
        // classes); a folder without transfer splits is probed on its own classes, which the
        // report marks not testable.
        let transfer = r.data_dir().join("transfer-train").is_dir();
        let splits = if transfer { ["transfer-train", "transfer-val"] } else { ["train", "val"] };
        r.zfnet(&Cmd::ProbeLayers {
            on: r.on(r.data_dir()),
            splits,
            train_size: p.probe_train,
            test_size: p.probe_test,
            out: r.path("table7"),
        })
    })?;
    let wall = started.elapsed().as_secs_f64();
    let report = crate::report::write_report(&run, wall)?;
    let total: f64 = run.times.iter().map(|t| t.seconds).sum();
    eprintln!("done: all stages {:.1} min (this invocation {:.1} min)", total / 60.0, wall / 60.0);
    Ok(report)
}

/// Whether an image folder carries part annotations (`<image>.json` side files, as
/// `zfnet data generate` writes them) in its first class folder.
fn has_annotations(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .ok()
        .and_then(|mut classes| classes.find_map(|c| c.ok().filter(|c| c.path().is_dir())))
        .and_then(|c| std::fs::read_dir(c.path()).ok())
        .is_some_and(|mut files| files.any(|f| f.is_ok_and(|f| f.path().extension().is_some_and(|e| e == "json"))))
}

/// Builds zfnet in release mode through `$CARGO` and returns its path.
fn build(root: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "zf-cli"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p zf-cli failed".into());
    }
    Ok(crate::target_dir(root).join("release/zfnet"))
}
