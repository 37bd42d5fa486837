//! Training against PyTorch (golden/make_golden.py), resume-equals-uninterrupted, and the
//! divergence stop.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use zf_data::{Generated, GeneratedConfig, Preprocess};
use zf_model::weights::expected_shapes;
use zf_model::{Dropout, NoTap, WeightsFile, ZfNet};
use zf_train::{renormalize, Data, Observer, Quiet, Sgd, StepReport, TrainConfig, TrainError};

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn three_sgd_steps_with_renormalization_match_pytorch() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let file = WeightsFile::read(&dir.join("sgd.weights.safetensors")).unwrap();
    let config = file.config().unwrap().unwrap();
    let start = file.tensors(&config, &zf_model::test_device().unwrap()).unwrap();
    let g =
        candle_core::safetensors::load(dir.join("sgd.golden.safetensors"), &zf_model::test_device().unwrap()).unwrap();
    let params: Vec<(String, Var)> = expected_shapes(&config)
        .unwrap()
        .into_iter()
        .map(|(k, _)| (k.clone(), Var::from_tensor(&start[&k]).unwrap()))
        .collect();
    let net = ZfNet::new(
        &config,
        VarBuilder::from_tensors(
            params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect(),
            DType::F32,
            &zf_model::test_device().unwrap(),
        ),
    )
    .unwrap();
    let mut sgd = Sgd::new(&params, 0.9, 1e-3).unwrap();
    let mut scaled = 0;
    for step in 0..3 {
        let logits = net.forward_dropout(&g[&format!("x{step}")], Dropout::Off, &mut NoTap).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &g[&format!("y{step}")]).unwrap();
        let grads = loss.backward().unwrap();
        let gs: Vec<Tensor> = params.iter().map(|(_, v)| grads.get(v.as_tensor()).unwrap().clone()).collect();
        sgd.step(&params, &gs, 1e-2).unwrap();
        for (k, v) in &params {
            if k.starts_with("conv") && k.ends_with("weight") {
                scaled += renormalize(v, 0.1).unwrap();
            }
        }
    }
    assert!(scaled >= 6, "conv1's filters start above the radius and are renormalized");
    for (k, v) in &params {
        let want = &g[&format!("final.{k}")];
        let err = max_abs(&(v.as_tensor() - want).unwrap()) / max_abs(want);
        assert!(err < 1e-4, "{k}: relative error {err}");
    }
}

fn data() -> Data {
    let pre = Preprocess::for_input(112);
    let cfg = GeneratedConfig { seed: 1, clutter: 4, ..Default::default() };
    Data {
        train: Arc::new(Generated::split(&cfg, zf_data::Split::Train, 40).with_preprocess(pre)),
        val: Arc::new(Generated::split(&cfg, zf_data::Split::Val, 20).with_preprocess(pre)),
        description: "test".into(),
        spec: None,
    }
}

fn config() -> TrainConfig {
    TrainConfig { batch: 8, checkpoint_every: 3, threads: 2, ..TrainConfig::tiny().with_epochs(2) }
}

fn weights(run: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(run.join("model.safetensors"), &Device::Cpu).unwrap()
}

struct StopAt<'a>(usize, &'a AtomicBool);

impl Observer for StopAt<'_> {
    fn on_step(&mut self, s: &StepReport) {
        if s.step == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let never = AtomicBool::new(false);
    let full = zf_train::train(&config(), &data(), &a, false, "test", &Device::Cpu, &never, &mut Quiet).unwrap();
    assert_eq!((full.epochs_done, full.steps, full.interrupted), (2, 10, false));
    // Stopped mid-epoch at step 7 (Ctrl-C), then resumed.
    let stop = AtomicBool::new(false);
    let part =
        zf_train::train(&config(), &data(), &b, false, "test", &Device::Cpu, &stop, &mut StopAt(7, &stop)).unwrap();
    assert!(part.interrupted);
    assert_eq!(part.steps, 7);
    let rest = zf_train::train(&config(), &data(), &b, true, "test", &Device::Cpu, &never, &mut Quiet).unwrap();
    assert_eq!((rest.epochs_done, rest.steps), (2, 10));
    let (wa, wb) = (weights(&a), weights(&b));
    for (k, t) in &wa {
        assert_eq!(max_abs(&(t - &wb[k]).unwrap()), 0.0, "{k} differs after resuming");
    }
    // The metrics are the same lines (timings aside).
    let lines = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["images_per_s", "seconds"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(lines(&a), lines(&b));
    // Snapshots at the scaled epochs, run.json, the mean.
    for f in ["run.json", "mean.safetensors", "checkpoint.safetensors", "snapshots/epoch-001.safetensors"] {
        assert!(a.join(f).exists(), "{f}");
    }
    // A second run into the same folder without --resume is refused.
    let e = zf_train::train(&config(), &data(), &a, false, "test", &Device::Cpu, &never, &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds a run already: pass --resume"), "{e}");
}

#[test]
fn a_diverging_loss_stops_with_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("nan");
    // A learning rate so large that the first update sends the weights to ~1e30 and the next
    // forward pass overflows.
    let cfg = TrainConfig { lr: 1e30, renorm: None, checkpoint_every: 1, ..config() };
    let never = AtomicBool::new(false);
    let e = zf_train::train(&cfg, &data(), &run, false, "test", &Device::Cpu, &never, &mut Quiet).unwrap_err();
    let TrainError::Diverged { step, .. } = e else { panic!("expected divergence, got {e}") };
    assert!(step >= 1, "the first step has a finite loss");
    assert!(e.to_string().contains("training stopped; the last good checkpoint is in"));
    // The checkpoint holds finite weights from the step before.
    let (w, _, state) = zf_train::RunDir { root: run.clone() }.load_checkpoint(&Device::Cpu).unwrap();
    assert_eq!(state.step, step);
    for (k, t) in w {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{k}");
    }
}
