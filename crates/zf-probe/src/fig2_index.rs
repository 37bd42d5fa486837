//! Fig. 2's index on disk: what `zfnet visualize` writes once and `zfnet serve` reads for a
//! unit's top-k images. A folder with `topk.json` (a [`Fig2Doc`]: per feature map its hits,
//! strongest first) and, per layer, `STEM.safetensors` holding `projection`,
//! `[hits, 3, S, S]` f32, the hits' projections in `topk.json`'s order (the layer's maps in
//! order, each map's ranks within). STEM is [`file_stem`]: `layer1`..`layer5` for ZFNet, the
//! layer's name otherwise.
//!
//! [`write_index`] writes it; [`Fig2Index::open`] reads it back, checking that every map's rows
//! are in its layer's file, and [`Fig2Index::projection`] reads one hit's projection from the
//! memory-mapped file without loading the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{bail, DType, Result, Tensor};
use zf_model::Point;

use crate::records::{Fig2Doc, Fig2Map};

/// The index's document, in the folder.
pub const DOC: &str = "topk.json";

/// The file stem of `layer`'s projections (and `zfnet visualize`'s figure): ZFNet's conv
/// layers by the paper's number (`layer5`), any other layer by its name (`conv5_3`).
pub fn file_stem(arch: &str, layer: &str) -> String {
    match layer.parse::<Point>().ok().and_then(Point::paper_layer) {
        Some(n) if arch.starts_with("zfnet") => format!("layer{n}"),
        _ => layer.to_string(),
    }
}

/// Writes an index to `dir` (created if missing): `projections` holds, per layer named in
/// `doc`, that layer's hits' projections `[hits, 3, S, S]` in `doc`'s order.
pub fn write_index(dir: &Path, arch: &str, doc: &Fig2Doc, projections: &[(String, Tensor)]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| candle_core::Error::Msg(format!("cannot create {}: {e}", dir.display())))?;
    for (layer, t) in projections {
        let hits: usize = doc.maps.iter().filter(|m| &m.layer == layer).map(|m| m.hits.len()).sum();
        if t.rank() != 4 || t.dim(0)? != hits || t.dim(1)? != 3 {
            bail!("{layer}: {hits} hits in the document but projections of shape {:?}", t.dims())
        }
        let meta = HashMap::from([("layer".to_string(), layer.clone())]);
        let path = dir.join(format!("{}.safetensors", file_stem(arch, layer)));
        zf_model::weights::save_tensors(&[("projection".to_string(), t.to_dtype(DType::F32)?)], meta, &path)?;
    }
    let json = serde_json::to_vec_pretty(doc).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    zf_data::write_atomic(&dir.join(DOC), &json).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// Where one map's hits are: its place in the document and its first row in the layer's file.
#[derive(Clone, Copy, Debug)]
struct At {
    map: usize,
    row: usize,
}

/// An index opened for reading.
#[derive(Debug)]
pub struct Fig2Index {
    dir: PathBuf,
    doc: Fig2Doc,
    at: HashMap<(String, usize), At>,
    files: HashMap<String, PathBuf>,
    /// `S`, the projections' side.
    size: usize,
}

impl Fig2Index {
    /// Opens the index in `dir` for a network of architecture `arch` and input side `size`:
    /// reads `topk.json` and checks that each layer's file holds as many `[3, S, S]`
    /// projections as the document has hits.
    pub fn open(dir: &Path, arch: &str, size: usize) -> Result<Self> {
        let doc_path = dir.join(DOC);
        let bytes = std::fs::read(&doc_path).map_err(|e| {
            candle_core::Error::Msg(format!(
                "cannot read {}: {e} (an index is the folder `zfnet visualize --out DIR` wrote)",
                doc_path.display()
            ))
        })?;
        let doc: Fig2Doc = serde_json::from_slice(&bytes)
            .map_err(|e| candle_core::Error::Msg(format!("{} is not a Fig. 2 index: {e}", doc_path.display())))?;
        let mut at = HashMap::new();
        let mut rows: HashMap<String, usize> = HashMap::new();
        for (k, m) in doc.maps.iter().enumerate() {
            let row = rows.entry(m.layer.clone()).or_default();
            at.insert((m.layer.clone(), m.map), At { map: k, row: *row });
            *row += m.hits.len();
        }
        let mut files = HashMap::new();
        for (layer, hits) in rows {
            let path = dir.join(format!("{}.safetensors", file_stem(arch, &layer)));
            // SAFETY: the file is only read; an index is written once and not changed while served.
            let st = unsafe { MmapedSafetensors::new(&path) }.map_err(|e| {
                candle_core::Error::Msg(format!("index {}: cannot read {}: {e}", dir.display(), path.display()))
            })?;
            let view = st.get("projection")?;
            if view.shape() != [hits, 3, size, size] || view.dtype() != safetensors::Dtype::F32 {
                bail!(
                    "{}: `projection` is {:?} {:?}, the index's {layer} needs f32 [{hits}, 3, {size}, {size}] (was it written for another network?)",
                    path.display(),
                    view.dtype(),
                    view.shape()
                )
            }
            files.insert(layer, path);
        }
        Ok(Self { dir: dir.to_path_buf(), doc, at, files, size })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The document.
    pub fn doc(&self) -> &Fig2Doc {
        &self.doc
    }

    /// The maps of `layer` (its name as the document records it) that the index holds.
    pub fn maps_of(&self, layer: &str) -> Vec<usize> {
        let mut maps: Vec<usize> = self.doc.maps.iter().filter(|m| m.layer == layer).map(|m| m.map).collect();
        maps.sort_unstable();
        maps
    }

    /// Map `map` of `layer`'s hits, if the index holds that map.
    pub fn get(&self, layer: &str, map: usize) -> Option<&Fig2Map> {
        self.at.get(&(layer.to_string(), map)).map(|a| &self.doc.maps[a.map])
    }

    /// The projection of hit `rank` of map `map` of `layer`, `[3, S, S]` row-major.
    pub fn projection(&self, layer: &str, map: usize, rank: usize) -> Result<Vec<f32>> {
        let (Some(a), Some(path)) = (self.at.get(&(layer.to_string(), map)), self.files.get(layer)) else {
            bail!("the index has no map {map} of {layer}")
        };
        if rank >= self.doc.maps[a.map].hits.len() {
            bail!("map {map} of {layer} has {} hits, asked for rank {rank}", self.doc.maps[a.map].hits.len())
        }
        // SAFETY: as in `open`.
        let st = unsafe { MmapedSafetensors::new(path) }?;
        let view = st.get("projection")?;
        let plane = 3 * self.size * self.size * 4;
        let start = (a.row + rank) * plane;
        let bytes = view
            .data()
            .get(start..start + plane)
            .ok_or_else(|| candle_core::Error::Msg(format!("{} is shorter than its header says", path.display())))?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::records::Fig2Hit;

    fn hit(rank: usize, image: usize) -> Fig2Hit {
        Fig2Hit {
            rank,
            image,
            source: format!("img{image}"),
            position: (rank, 0),
            value: 10.0 - rank as f32,
            receptive_field: [0, 0, 4, 4],
            object_energy: None,
            object_area: None,
        }
    }

    #[test]
    fn an_index_reads_back_each_hits_own_projection() {
        let dir = tempfile::tempdir().unwrap();
        let s = 4;
        let doc = Fig2Doc {
            weights: "w".into(),
            data: "generated".into(),
            images_searched: 10,
            skipped: 0,
            top: 2,
            one_per_image: true,
            maps: vec![
                Fig2Map { layer: "conv5".into(), map: 3, hits: vec![hit(0, 1), hit(1, 2)] },
                Fig2Map { layer: "conv2".into(), map: 0, hits: vec![hit(0, 5)] },
                Fig2Map { layer: "conv5".into(), map: 7, hits: vec![hit(0, 4), hit(1, 9)] },
            ],
        };
        // Row r of a layer's file is filled with the value r (and a ramp, to see the layout).
        let rows = |n: usize| {
            let v: Vec<f32> =
                (0..n * 3 * s * s).map(|i| (i / (3 * s * s)) as f32 + (i % (3 * s * s) % 7) as f32 / 100.0).collect();
            Tensor::from_vec(v, (n, 3, s, s), &candle_core::Device::Cpu).unwrap()
        };
        write_index(dir.path(), "zfnet", &doc, &[("conv5".into(), rows(4)), ("conv2".into(), rows(1))]).unwrap();
        assert!(dir.path().join("layer5.safetensors").is_file() && dir.path().join("layer2.safetensors").is_file());
        let index = Fig2Index::open(dir.path(), "zfnet", s).unwrap();
        assert_eq!(index.maps_of("conv5"), vec![3, 7]);
        assert_eq!(index.get("conv5", 7).unwrap().hits[1].image, 9);
        // conv5 map 7 rank 1 is the layer's fourth row (map 3's two hits come first).
        let p = index.projection("conv5", 7, 1).unwrap();
        assert_eq!(p.len(), 3 * s * s);
        assert!((p[0] - 3.0).abs() < 1e-6 && (p[1] - 3.01).abs() < 1e-6);
        assert!((index.projection("conv5", 3, 0).unwrap()[0]).abs() < 1e-6);
        assert!(index.projection("conv5", 4, 0).is_err(), "a map the index lacks");
        assert!(index.projection("conv5", 7, 2).is_err(), "a rank past the hits");
        assert!(index.get("conv1", 0).is_none());
        // Another network's size, or a count that does not fit, is refused when opening.
        assert!(Fig2Index::open(dir.path(), "zfnet", 8).unwrap_err().to_string().contains("another network"));
        assert!(write_index(dir.path(), "zfnet", &doc, &[("conv5".into(), rows(3))]).is_err());
        assert!(Fig2Index::open(&dir.path().join("missing"), "zfnet", s)
            .unwrap_err()
            .to_string()
            .contains("zfnet visualize"));
        // Another network's layers are stored by name.
        assert_eq!(file_stem("vgg16", "conv5_3"), "conv5_3");
        assert_eq!(file_stem("zfnet", "conv3"), "layer3");
    }
}
