//! The `zfnet` commands of `cargo xtask reproduce-paper`'s stages, typed: each stage says what it
//! runs on and at which sizes as fields of a [`Cmd`], and [`Cmd::args`] is the one place those
//! become a command line.

use std::path::PathBuf;

/// The network an analysis looks at and the images it looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct On {
    /// Weights: a path or `hf://...`.
    pub weights: String,
    /// The training set's mean image; `None`: the command's own default (ImageNet's channel
    /// means for torchvision's networks).
    pub mean: Option<PathBuf>,
    /// An image folder or the generated data set's folder.
    pub data: PathBuf,
}

/// Where Table 1's part boxes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Parts {
    /// The generated data set's aligned frontal faces (`--split faces`).
    Faces,
    /// A boxes file (`--boxes FILE`).
    Boxes(PathBuf),
    /// The folder's own annotations.
    Annotations,
}

/// How a network is trained.
#[derive(Clone, Debug, PartialEq)]
pub enum Training {
    /// Continue the run in its folder from its checkpoint.
    Resume,
    /// A new run with the profile's recipe.
    New {
        config: &'static str,
        epochs: usize,
        seed: u64,
        channels: Option<[usize; 5]>,
        lr: Option<f64>,
        batch: Option<usize>,
        dropout: Option<f64>,
        patience: Option<usize>,
        /// The Fig. 6 ablation this run is: `--alexnet-first-layer` or `--no-renorm`.
        ablation: Option<&'static str>,
    },
}

/// One `zfnet` command of a stage.
#[derive(Clone, Debug, PartialEq)]
pub enum Cmd {
    /// `zfnet data generate`: the generated data set with its held-out and face splits.
    Generate {
        out: PathBuf,
        per_class: usize,
        val_per_class: usize,
        clutter: usize,
        transfer_per_class: usize,
        faces: usize,
        seed: u64,
    },
    Train {
        data: PathBuf,
        out: PathBuf,
        how: Training,
    },
    /// Ten-crop evaluation, per-image results into `out`.
    Eval {
        weights: String,
        data: PathBuf,
        mean: Option<PathBuf>,
        out: PathBuf,
    },
    /// Fig. 2's top projections (`layers`: the command's default layers when `None`).
    Visualize {
        on: On,
        layers: Option<String>,
        maps: usize,
        top: usize,
        limit: usize,
        out: PathBuf,
    },
    Evolution {
        run: PathBuf,
        data: PathBuf,
        limit: usize,
        out: PathBuf,
    },
    Invariance {
        on: On,
        images: usize,
        out: PathBuf,
    },
    /// Fig. 6: the first layers of the named banks (`name`, weights).
    Filters {
        data: PathBuf,
        mean: PathBuf,
        banks: Vec<(String, String)>,
        out: PathBuf,
    },
    Occlusion {
        on: On,
        images: usize,
        size: usize,
        stride: usize,
        out: PathBuf,
    },
    Correspondence {
        on: On,
        parts: Parts,
        images: usize,
        box_size: usize,
        out: PathBuf,
    },
    /// Table 7's probes, fitted on `splits[0]` and measured on `splits[1]`.
    ProbeLayers {
        on: On,
        splits: [&'static str; 2],
        train_size: usize,
        test_size: usize,
        out: PathBuf,
    },
    Report {
        run: PathBuf,
    },
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `flag value` pairs, the `None`s left out.
fn optional(pairs: &[(&str, Option<String>)]) -> Vec<String> {
    pairs.iter().filter_map(|(f, v)| v.as_ref().map(|v| [f.to_string(), v.clone()])).flatten().collect()
}

impl On {
    fn args(&self) -> Vec<String> {
        let mut a = vec!["--weights".into(), self.weights.clone()];
        a.extend(optional(&[("--mean", self.mean.as_deref().map(path))]));
        a.extend(["--data".into(), path(&self.data)]);
        a
    }
}

impl Cmd {
    /// The command line, without the `zfnet` program (the device flag is the run's).
    pub fn args(&self) -> Vec<String> {
        let s = |v: &dyn ToString| v.to_string();
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[String]| a.extend_from_slice(items);
        match self {
            Cmd::Generate { out, per_class, val_per_class, clutter, transfer_per_class, faces, seed } => push(&[
                s(&"data"),
                s(&"generate"),
                s(&"--out"),
                path(out),
                s(&"--per-class"),
                s(per_class),
                s(&"--val-per-class"),
                s(val_per_class),
                s(&"--clutter"),
                s(clutter),
                s(&"--transfer-per-class"),
                s(transfer_per_class),
                s(&"--faces"),
                s(faces),
                s(&"--seed"),
                s(seed),
            ]),
            Cmd::Train { data, out, how } => {
                push(&[s(&"train"), s(&"--data"), path(data), s(&"--out"), path(out)]);
                match how {
                    Training::Resume => push(&[s(&"--resume")]),
                    Training::New { config, epochs, seed, channels, lr, batch, dropout, patience, ablation } => {
                        push(&[s(&"--config"), s(config), s(&"--epochs"), s(epochs), s(&"--seed"), s(seed)]);
                        push(&optional(&[
                            ("--channels", channels.map(|c| c.map(|v| v.to_string()).join(","))),
                            ("--lr", lr.map(|v| v.to_string())),
                            ("--batch", batch.map(|v| v.to_string())),
                            ("--dropout", dropout.map(|v| v.to_string())),
                            ("--patience", patience.map(|v| v.to_string())),
                        ]));
                        if let Some(flag) = ablation {
                            push(&[s(flag)]);
                        }
                    }
                }
            }
            Cmd::Eval { weights, data, mean, out } => {
                push(&[s(&"eval"), s(&"--weights"), weights.clone(), s(&"--data"), path(data)]);
                push(&optional(&[("--mean", mean.as_deref().map(path))]));
                push(&[s(&"--ten-crop"), s(&"--out"), path(out)]);
            }
            Cmd::Visualize { on, layers, maps, top, limit, out } => {
                push(&[s(&"visualize")]);
                push(&on.args());
                push(&optional(&[("--layers", layers.clone())]));
                push(&[s(&"--maps"), s(maps), s(&"--top"), s(top), s(&"--limit"), s(limit), s(&"--out"), path(out)]);
            }
            Cmd::Evolution { run, data, limit, out } => push(&[
                s(&"evolution"),
                s(&"--run"),
                path(run),
                s(&"--data"),
                path(data),
                s(&"--limit"),
                s(limit),
                s(&"--out"),
                path(out),
            ]),
            Cmd::Invariance { on, images, out } => {
                push(&[s(&"invariance")]);
                push(&on.args());
                push(&[s(&"--images"), s(images), s(&"--out"), path(out)]);
            }
            Cmd::Filters { data, mean, banks, out } => {
                push(&[s(&"filters"), s(&"--data"), path(data), s(&"--mean"), path(mean)]);
                for (name, w) in banks {
                    push(&[s(&"--weights"), format!("{name}={w}")]);
                }
                push(&[s(&"--out"), path(out)]);
            }
            Cmd::Occlusion { on, images, size, stride, out } => {
                push(&[s(&"occlusion")]);
                push(&on.args());
                push(&[
                    s(&"--images"),
                    s(images),
                    s(&"--size"),
                    s(size),
                    s(&"--stride"),
                    s(stride),
                    s(&"--out"),
                    path(out),
                ]);
            }
            Cmd::Correspondence { on, parts, images, box_size, out } => {
                push(&[s(&"correspondence")]);
                push(&on.args());
                match parts {
                    Parts::Faces => push(&[s(&"--split"), s(&"faces")]),
                    Parts::Boxes(f) => push(&[s(&"--boxes"), path(f)]),
                    Parts::Annotations => {}
                }
                push(&[s(&"--images"), s(images), s(&"--box"), s(box_size), s(&"--out"), path(out)]);
            }
            Cmd::ProbeLayers { on, splits, train_size, test_size, out } => {
                push(&[s(&"probe-layers"), s(&"--train-split"), s(&splits[0]), s(&"--test-split"), s(&splits[1])]);
                push(&on.args());
                push(&[s(&"--train-size"), s(train_size), s(&"--test-size"), s(test_size), s(&"--out"), path(out)]);
            }
            Cmd::Report { run } => push(&[s(&"report"), path(run)]),
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> On {
        On { weights: "w.safetensors".into(), mean: Some("m.safetensors".into()), data: "d".into() }
    }

    #[test]
    fn each_field_becomes_its_flag() {
        let cmd = Cmd::Occlusion { on: on(), images: 3, size: 24, stride: 4, out: "fig7".into() };
        assert_eq!(
            cmd.args().join(" "),
            "occlusion --weights w.safetensors --mean m.safetensors --data d --images 3 --size 24 --stride 4 --out fig7"
        );
        let new = Training::New {
            config: "tiny",
            epochs: 10,
            seed: 2,
            channels: Some([48, 32, 48, 48, 32]),
            lr: Some(0.01),
            batch: None,
            dropout: Some(0.0),
            patience: None,
            ablation: Some("--no-renorm"),
        };
        let train = Cmd::Train { data: "d".into(), out: "runs/x".into(), how: new };
        assert_eq!(
            train.args().join(" "),
            "train --data d --out runs/x --config tiny --epochs 10 --seed 2 --channels 48,32,48,48,32 --lr 0.01 --dropout 0 --no-renorm"
        );
        let resume = Cmd::Train { data: "d".into(), out: "runs/x".into(), how: Training::Resume };
        assert_eq!(resume.args().join(" "), "train --data d --out runs/x --resume");
    }

    #[test]
    fn a_missing_mean_and_default_layers_are_left_to_zfnet() {
        let bare = On { mean: None, ..on() };
        let cmd = Cmd::Visualize { on: bare, layers: None, maps: 8, top: 9, limit: 100, out: "fig2".into() };
        assert_eq!(
            cmd.args().join(" "),
            "visualize --weights w.safetensors --data d --maps 8 --top 9 --limit 100 --out fig2"
        );
        let cmd =
            Cmd::Correspondence { on: on(), parts: Parts::Annotations, images: 5, box_size: 48, out: "t1".into() };
        assert!(!cmd.args().iter().any(|a| a == "--split" || a == "--boxes"));
    }
}
