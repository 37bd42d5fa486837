//! Weights through the Hugging Face hub cache: a cache directory laid out as Python's
//! `huggingface_hub` lays it out (blobs, snapshots linking to them, refs), built here, found
//! through HF_HUB_CACHE and HF_HOME, by branch, tag and commit hash, and never the network.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use candle_core::{Device, Tensor};
use zf_model::init::{init_net, Init};
use zf_model::{hub, ZfConfig, ZfNet};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `<cache>/models--owner--zfnet/{blobs/<sha>, snapshots/<commit>/model.safetensors -> blob,
/// refs/main, refs/v1}`, as `huggingface_hub.hf_hub_download` leaves it.
fn build_cache(cache: &Path, weights: &Path) {
    let repo = cache.join("models--owner--zfnet");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(COMMIT).join("sub")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    let blob = "5f1e0d6c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170";
    std::fs::copy(weights, repo.join("blobs").join(blob)).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        format!("../../../blobs/{blob}"),
        repo.join("snapshots").join(COMMIT).join("sub/model.safetensors"),
    )
    .unwrap();
    #[cfg(not(unix))]
    std::fs::copy(weights, repo.join("snapshots").join(COMMIT).join("sub/model.safetensors")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("refs/v1"), COMMIT).unwrap();
}

fn same_logits(a: &ZfNet, b: &ZfNet) {
    let s = a.config().input_size;
    let x = Tensor::randn(0f32, 50., (2, 3, s, s), &Device::Cpu).unwrap();
    let d = (a.forward(&x).unwrap() - b.forward(&x).unwrap()).unwrap().abs().unwrap().sum_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
}

// One test function: the environment is process-wide, so the cases run in sequence.
#[test]
fn weights_load_from_a_python_layout_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ZfConfig::tiny().with_input_size(96);
    let net = init_net(&cfg, Init::He, 11, &Device::Cpu).unwrap();
    let file = tmp.path().join("model.safetensors");
    net.save(&file).unwrap();
    let home = tmp.path().join("hf-home");
    build_cache(&home.join("hub"), &file);

    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HOME", &home);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert_eq!(hub::cache_dir(), home.join("hub"));
    for spec in [
        "hf://owner/zfnet/sub/model.safetensors".to_string(),
        "hf://owner/zfnet@main/sub/model.safetensors".to_string(),
        "hf://owner/zfnet@v1/sub/model.safetensors".to_string(),
        format!("hf://owner/zfnet@{COMMIT}/sub/model.safetensors"),
    ] {
        let loaded = ZfNet::load(&spec, None, &Device::Cpu).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(loaded.config(), &cfg, "{spec}");
        same_logits(&net, &loaded);
    }

    // HF_HUB_CACHE wins over HF_HOME.
    let other = tmp.path().join("other-cache");
    build_cache(&other, &file);
    std::env::set_var("HF_HUB_CACHE", &other);
    let p = hub::resolve("hf://owner/zfnet/sub/model.safetensors").unwrap();
    assert!(p.starts_with(&other), "{}", p.display());

    // Offline and absent: a clear error that names the file, the cache and the variable.
    for missing in [
        "hf://owner/zfnet/nope.safetensors",
        "hf://owner/zfnet@v2/sub/model.safetensors",
        "hf://someone/else/model.safetensors",
    ] {
        let e = ZfNet::load(missing, None, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("is not in the Hugging Face cache") && e.contains("HF_HUB_OFFLINE"), "{e}");
        assert!(e.contains(other.to_str().unwrap()), "{e}");
    }
    // "true" and "ON" count as set too, as in huggingface_hub.
    for v in ["true", "ON"] {
        std::env::set_var("HF_HUB_OFFLINE", v);
        assert!(hub::offline());
    }
    std::env::set_var("HF_HUB_OFFLINE", "0");
    assert!(!hub::offline());
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HF_HOME");
}
