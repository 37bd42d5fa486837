//! Golden tests: our forward pass, switches, loss and gradients against PyTorch's, on the
//! fixtures that `golden/make_golden.py` made (reduced widths, both first layers, LRN on/off).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use zf_model::{Point, WeightsFile, ZfNet};

const CASES: [&str; 3] = ["zf", "alexnet", "zf_nolrn"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Where the tests run: `ZF_TEST_DEVICE` (cpu by default; `cuda` on a GPU build).
fn dev() -> Device {
    zf_model::test_device().unwrap()
}

fn golden(case: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(&format!("{case}.golden.safetensors")), &dev()).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

/// max |ours - theirs| / max |theirs|: a relative error that does not blow up on zeros.
fn rel_err(ours: &Tensor, theirs: &Tensor) -> f32 {
    assert_eq!(ours.dims(), theirs.dims());
    let (a, b) = (values(ours), values(theirs));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn load(case: &str) -> ZfNet {
    let file = WeightsFile::read(&fixture(&format!("{case}.weights.safetensors"))).unwrap();
    assert!(file.config().unwrap().is_some(), "the fixture records its config");
    file.into_net(None, &dev()).unwrap()
}

#[test]
fn every_tap_matches_pytorch() {
    for case in CASES {
        let g = golden(case);
        let net = load(case);
        let trace = net.trace(&g["input"]).unwrap();
        let mut seen = 0;
        for (point, ours) in &trace.activations {
            let theirs = g.get(point.name()).unwrap_or_else(|| panic!("{case}: PyTorch has no {point}"));
            let err = rel_err(ours, theirs);
            assert!(err < 1e-4, "{case}/{point}: relative error {err}");
            seen += 1;
        }
        let want = if case == "zf_nolrn" { 12 } else { 14 };
        assert_eq!(seen, want, "{case}: every tap is compared");
        assert!(trace.get(Point::Norm1).is_none() == (case == "zf_nolrn"));
    }
}

#[test]
fn switches_match_pytorch() {
    for case in CASES {
        let g = golden(case);
        let net = load(case);
        let trace = net.trace(&g["input"]).unwrap();
        for (pool, pooled) in [(Point::Pool1, Point::Conv1), (Point::Pool2, Point::Conv2), (Point::Pool5, Point::Conv5)]
        {
            let sw = trace.switches_of(pool).unwrap();
            let ours: Vec<i64> = sw.indices.to_dtype(DType::I64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let theirs_t = &g[&format!("{pool}.switches")];
            assert_eq!(sw.indices.dims(), theirs_t.dims(), "{case}/{pool}");
            let theirs: Vec<i64> = theirs_t.flatten_all().unwrap().to_vec1().unwrap();
            // An index may only differ where two inputs of a window are equal to float
            // rounding (a near-tie that rounding can flip); exact ties resolve like PyTorch.
            let input = values(trace.get(pooled).unwrap());
            let (h, w) = sw.input_hw;
            let (_, _, ho, wo) = sw.indices.dims4().unwrap();
            let mut differing = 0;
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                if a != b {
                    let plane = i / (ho * wo) * h * w;
                    let (va, vb) = (input[plane + *a as usize], input[plane + *b as usize]);
                    assert!(
                        (va - vb).abs() <= 1e-4 * va.abs().max(1.0),
                        "{case}/{pool}[{i}]: {a} ({va}) vs {b} ({vb})"
                    );
                    differing += 1;
                }
            }
            assert!(differing * 1000 <= ours.len(), "{case}/{pool}: {differing} of {} switches differ", ours.len());
        }
    }
}

#[test]
fn loss_and_every_gradient_match_pytorch() {
    for case in CASES {
        let g = golden(case);
        let file = WeightsFile::read(&fixture(&format!("{case}.weights.safetensors"))).unwrap();
        let config = file.config().unwrap().unwrap();
        let vars: HashMap<String, Var> = file
            .tensors(&config, &dev())
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, Var::from_tensor(&t).unwrap()))
            .collect();
        let tensors = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let net = ZfNet::new(&config, VarBuilder::from_tensors(tensors, DType::F32, &dev())).unwrap();
        let input = Var::from_tensor(&g["input"]).unwrap();
        // Dropout off, as in the script: the evaluation-mode forward, with gradients.
        let logits = net.forward(input.as_tensor()).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &g["labels"]).unwrap();
        let err = rel_err(&loss.reshape(1).unwrap(), &g["loss"]);
        assert!(err < 1e-4, "{case}: loss relative error {err}");
        let grads = loss.backward().unwrap();
        let mut checked = 0;
        for (key, var) in vars.iter().map(|(k, v)| (format!("grad.{k}"), v)).chain([("grad.input".to_string(), &input)])
        {
            let ours = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{case}: no gradient for {key}"));
            let err = rel_err(ours, &g[&key]);
            assert!(err < 1e-3, "{case}/{key}: relative error {err}");
            checked += 1;
        }
        assert_eq!(checked, 17, "{case}: 16 parameters and the input");
        if !dev().is_cpu() {
            continue; // the graph-free pass below is the CPU trainer's; other devices train by the graph above
        }
        // The graph-free CPU training pass (what the trainer runs on the CPU) against the same
        // fixtures: the loss and every parameter's gradient.
        let labels = g["labels"].to_dtype(DType::U32).unwrap().to_vec1::<u32>().unwrap();
        let mut pass = zf_model::Backprop::default();
        let value = pass.run(&net, &g["input"], &labels, zf_model::Dropout::Off).unwrap();
        let err = rel_err(&Tensor::new(&[value], &Device::Cpu).unwrap(), &g["loss"]);
        assert!(err < 1e-4, "{case}: graph-free loss relative error {err}");
        let mut checked = 0;
        for (key, grad) in pass.gradients() {
            let want = &g[&format!("grad.{key}")];
            let ours = Tensor::from_slice(grad, want.shape(), &Device::Cpu).unwrap();
            let err = rel_err(&ours, want);
            assert!(err < 1e-3, "{case}/{key}: graph-free relative error {err}");
            checked += 1;
        }
        assert_eq!(checked, 16, "{case}: every parameter");
    }
}
