//! Everything a reproduction's stages measured, read back from the files they wrote, as types
//! ([`Results`]): a missing file is a stage that did not run (`None`); a file that does not
//! parse as its type is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zf_probe::records::{CorrespondenceDoc, EvolutionDoc, Fig2Doc, FiltersDoc, InvarianceDoc, OcclusionDoc, ProbesDoc};
use zf_train::{Eval, MetricLine, RunDir, RunRecord};

use crate::ReportError;

/// The networks a reproduction trains: ZFNet and the two Fig. 6 ablations.
pub const NETWORKS: [&str; 3] = ["zfnet", "alexnet", "no-renorm"];

/// One epoch of a training run (its `metrics.jsonl` epoch line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLine {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_top1_err: f64,
    pub lr: f64,
    pub images_per_s: f64,
}

/// The run's results, stage by stage (`None`: the stage did not run).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Table 2: each network's error (`eval/<name>.json`).
    pub eval: BTreeMap<String, Eval>,
    /// Each trained network's epochs (`runs/<name>/metrics.jsonl`).
    pub training: BTreeMap<String, Vec<EpochLine>>,
    /// How ZFNet was trained (`runs/zfnet/run.json`).
    pub run: Option<RunRecord>,
    pub fig2: Option<Fig2Doc>,
    pub fig4: Option<EvolutionDoc>,
    pub fig5: Option<InvarianceDoc>,
    pub fig6: Option<FiltersDoc>,
    pub fig7: Option<OcclusionDoc>,
    pub table1: Option<CorrespondenceDoc>,
    pub table7: Option<ProbesDoc>,
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::Io { path: path.to_path_buf(), source: e }),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ReportError::Parse { path: path.to_path_buf(), reason: e.to_string() }),
    }
}

impl Results {
    /// Reads a reproduction's folder (the layout `cargo xtask reproduce-paper` writes).
    pub fn gather(dir: &Path) -> Result<Self, ReportError> {
        let p = |rel: &str| -> PathBuf { dir.join(rel) };
        let mut r = Results::default();
        for name in NETWORKS {
            if let Some(e) = read::<Eval>(&p(&format!("eval/{name}.json")))? {
                r.eval.insert(name.into(), e);
            }
            let run = RunDir { root: p(&format!("runs/{name}")) };
            if run.metrics().exists() {
                let lines = run
                    .metrics_lines()
                    .map_err(|e| ReportError::Parse { path: run.metrics(), reason: e.to_string() })?;
                let epochs = lines
                    .into_iter()
                    .filter_map(|l| match l {
                        MetricLine::Epoch { epoch, train_loss, val_top1_err, lr, images_per_s, .. } => {
                            Some(EpochLine { epoch, train_loss, val_top1_err, lr, images_per_s })
                        }
                        MetricLine::Step { .. } => None,
                    })
                    .collect();
                r.training.insert(name.into(), epochs);
            }
        }
        r.run = read(&p("runs/zfnet/run.json"))?;
        r.fig2 = read(&p("fig2/topk.json"))?;
        r.fig4 = read(&p("fig4/evolution.json"))?;
        r.fig5 = read(&p("fig5/invariance.json"))?;
        r.fig6 = read(&p("fig6/filters.json"))?;
        r.fig7 = read(&p("fig7/occlusion.json"))?;
        r.table1 = read(&p("table1/correspondence.json"))?;
        r.table7 = read(&p("table7/probes.json"))?;
        Ok(r)
    }
}
