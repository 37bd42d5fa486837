//! The layer table (shape, parameters and multiply-adds per layer), pinned by snapshots and by
//! the paper's totals. Set `UPDATE_SNAPSHOTS=1` to rewrite the snapshot files after a deliberate
//! change.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use zf_model::ZfConfig;

fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing snapshot {}", path.display()));
    assert_eq!(actual, want, "layer table differs from {}", path.display());
}

#[test]
fn paper_network_has_the_papers_size() {
    let t = ZfConfig::paper().table().unwrap();
    // The paper's network: 62,357,608 parameters.
    assert_eq!(t.total_params(), 62_357_608);
    // Multiply-adds of the convolutions and linear layers, out_maps * out_h * out_w * in_maps * k * k:
    // conv1 96*110*110*3*49 + conv2 256*26*26*96*25 + conv3 384*13*13*256*9
    // + conv4 384*13*13*384*9 + conv5 256*13*13*384*9 + fc6 9216*4096 + fc7 4096*4096 + fc8 4096*1000.
    let want: u64 = 96 * 110 * 110 * 3 * 49
        + 256 * 26 * 26 * 96 * 25
        + 384 * 13 * 13 * 256 * 9
        + 384 * 13 * 13 * 384 * 9
        + 256 * 13 * 13 * 384 * 9
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000;
    assert_eq!(t.total_macs(), want);
    // "About 1.17 G" (1,170.33 M when counting the pooling and normalization layers).
    assert!((t.total_macs() as f64 / 1e9 - 1.17).abs() < 0.005);
    // The output sizes of the paper's Fig. 3.
    let shape = |n: &str| t.row(n).unwrap().shape.clone();
    assert_eq!(shape("conv1"), vec![96, 110, 110]);
    assert_eq!(shape("norm1"), vec![96, 55, 55]);
    assert_eq!(shape("conv2"), vec![256, 26, 26]);
    assert_eq!(shape("pool2"), vec![256, 13, 13]);
    assert_eq!(shape("conv5"), vec![256, 13, 13]);
    assert_eq!(shape("pool5"), vec![256, 6, 6]);
    assert_eq!(shape("fc8"), vec![1000]);
}

#[test]
fn alexnet_first_layer_sizes() {
    let t = ZfConfig::alexnet().table().unwrap();
    let shape = |n: &str| t.row(n).unwrap().shape.clone();
    assert_eq!(shape("conv1"), vec![96, 55, 55]);
    assert_eq!(shape("pool1"), vec![96, 27, 27]);
    assert_eq!(shape("conv2"), vec![256, 27, 27]);
    assert_eq!(shape("pool2"), vec![256, 13, 13]);
    assert_eq!(shape("pool5"), vec![256, 6, 6]);
}

#[test]
fn snapshots() {
    snapshot("paper.txt", &ZfConfig::paper().table().unwrap().to_string());
    snapshot("alexnet.txt", &ZfConfig::alexnet().table().unwrap().to_string());
    snapshot("tiny_nolrn_160.txt", &ZfConfig::tiny().with_lrn(false).with_input_size(160).table().unwrap().to_string());
}

#[test]
fn sizes_that_do_not_fit_are_errors() {
    let e = ZfConfig::paper().with_input_size(40).table().unwrap_err().to_string();
    assert!(e.contains("input size 40 does not fit the network's strides"), "{e}");
    assert!(e.contains("smaller than its window"), "{e}");
    let e = ZfConfig::paper().with_input_size(2).table().unwrap_err().to_string();
    assert!(e.contains("conv1 (7x7 stride 2 pad 1) gets a 2x2 input"), "{e}");
    let mut c = ZfConfig::paper();
    c.channels[2] = 0;
    assert!(c.table().unwrap_err().to_string().contains("zero width"));
    // The smallest input the paper's network takes: pool5 needs 3x3 from conv5.
    let smallest = (1..224).find(|&s| ZfConfig::paper().with_input_size(s).table().is_ok()).unwrap();
    assert!(
        ZfConfig::paper().with_input_size(smallest).table().unwrap().row("pool5").unwrap().shape == vec![256, 1, 1]
    );
}
