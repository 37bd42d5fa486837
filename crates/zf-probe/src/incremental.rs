//! Occlusion by windows (Fig. 7, faster): an occluder changes only a window of each conv
//! layer's input, so each occluded image is computed from the unoccluded image's activations by
//! recomputing only the windows the square reaches — conv1 .. conv5 with their pools and
//! normalizations, batched over square positions — and then the rest of the network from conv5.
//! The result equals the dense computation (every occluded image run through the whole
//! network) to float rounding; it is what [`crate::occlusion()`] runs on the CPU in f32.
//!
//! Along each axis a stage with window `k`, stride `s` and padding `p` maps a changed input
//! interval `[a, b)` to the outputs whose windows touch it, `o` with `o s - p < b` and
//! `o s - p + k > a`. Every position gets an output window of the same length (the longest
//! over the positions, shifted to stay inside the map, so it still covers the change), which
//! lets the windows of a batch of positions run as one tensor: each window's input — the
//! unoccluded activation with the previous stage's recomputed window pasted in, zeros where it
//! reaches past the border (a conv's padding; pooled values are ReLU outputs, so a zero never
//! wins a max) — is cut out and the stage applied without padding.

use candle_core::{DType, Device, IndexOp, Result, Tensor, D};
use rayon::prelude::*;
use zf_model::Net;

use crate::occlusion::{checked_offsets, positions, strongest_map, Occlusion, OcclusionConfig};
use crate::{bail, to_the_end, Progress, Steer};

/// A recomputed window of one position: origin `(y, x)`, side `l`, values `[C, l, l]`.
#[derive(Clone, Copy, Debug)]
struct Window<'a> {
    y: usize,
    x: usize,
    l: usize,
    values: &'a [f32],
}

/// One activation on the host: `[C, H, W]`.
struct Map {
    c: usize,
    h: usize,
    w: usize,
    values: Vec<f32>,
}

impl Map {
    fn of(t: &Tensor) -> Result<Self> {
        let (_, c, h, w) = t.dims4()?;
        Ok(Self { c, h, w, values: t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()? })
    }
}

/// The outputs of a stage whose windows touch the input interval `[a, b)`, clamped to
/// `0..n_out`, as `(start, end)`.
fn touched(a: usize, b: usize, (k, s, p): (usize, usize, usize), n_out: usize) -> (usize, usize) {
    // o s - p + k > a  <=>  o > (a + p - k) / s;  o s - p < b  <=>  o < (b + p) / s.
    let lo = (a + p + 1).saturating_sub(k).div_ceil(s);
    let hi = (b + p).div_ceil(s).min(n_out);
    (lo.min(hi), hi)
}

/// For each stage, each offset's window start along one axis, and the windows' length.
fn plan(offsets: &[usize], size: usize, stages: &[((usize, usize, usize), usize)]) -> Vec<(Vec<usize>, usize)> {
    let mut intervals: Vec<(usize, usize)> = offsets.iter().map(|&o| (o, o + size)).collect();
    let mut out = Vec::new();
    for &(window, n_out) in stages {
        let touched: Vec<(usize, usize)> = intervals.iter().map(|&(a, b)| touched(a, b, window, n_out)).collect();
        let l = touched.iter().map(|(a, b)| b - a).max().unwrap_or(0).max(1).min(n_out);
        let starts: Vec<usize> = touched.iter().map(|&(a, _)| a.min(n_out - l)).collect();
        intervals = starts.iter().map(|&a| (a, a + l)).collect();
        out.push((starts, l));
    }
    out
}

/// The input a stage's output window `[oy, oy + l) x [ox, ox + l)` reads, `[C, n, n]` with
/// `n = (l - 1) s + k`, from `map` with `prev` pasted over it and zeros beyond the border.
fn crop(
    map: &Map,
    prev: &Window<'_>,
    (oy, ox, l): (usize, usize, usize),
    (k, s, p): (usize, usize, usize),
    out: &mut [f32],
) {
    let n = (l - 1) * s + k;
    let (y0, x0) = ((oy * s) as isize - p as isize, (ox * s) as isize - p as isize);
    // The window's columns `j` inside the map: `0 <= x0 + j < w`.
    let (j0, j1) = ((-x0).clamp(0, n as isize) as usize, (map.w as isize - x0).clamp(0, n as isize) as usize);
    // The previous window's columns, as columns `j` of this window.
    let (pj0, pj1) = (
        (prev.x as isize - x0).clamp(0, n as isize) as usize,
        ((prev.x + prev.l) as isize - x0).clamp(0, n as isize) as usize,
    );
    for c in 0..map.c {
        for r in 0..n {
            let y = y0 + r as isize;
            let dst = &mut out[(c * n + r) * n..(c * n + r + 1) * n];
            if y < 0 || y >= map.h as isize {
                dst.fill(0.0);
                continue;
            }
            let y = y as usize;
            // The unoccluded row, zero beyond the left and right borders.
            let row = &map.values[(c * map.h + y) * map.w..(c * map.h + y + 1) * map.w];
            dst[..j0].fill(0.0);
            dst[j1.max(j0)..].fill(0.0);
            if j0 < j1 {
                let from = (x0 + j0 as isize) as usize;
                dst[j0..j1].copy_from_slice(&row[from..from + j1 - j0]);
            }
            // The previous stage's window on this row.
            if (prev.y..prev.y + prev.l).contains(&y) && pj0 < pj1 {
                let pr = &prev.values[(c * prev.l + y - prev.y) * prev.l..(c * prev.l + y - prev.y + 1) * prev.l];
                let from = (x0 + pj0 as isize) as usize - prev.x;
                dst[pj0..pj1].copy_from_slice(&pr[from..from + pj1 - pj0]);
            }
        }
    }
}

/// Fig. 7's maps by windows (see the module docs). Same arguments and result as
/// [`crate::occlusion()`]; the image must be an f32 tensor on the CPU.
pub fn occlusion_by_windows(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    config: OcclusionConfig,
    progress: Progress<'_>,
) -> Result<Occlusion> {
    to_the_end(progress, |steer| occlusion_by_windows_steered(net, image, label, config, steer))
}

/// [`occlusion_by_windows`], stoppable after every batch (see [`crate::occlusion_steered`]).
pub fn occlusion_by_windows_steered(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    config: OcclusionConfig,
    steer: Steer<'_>,
) -> Result<Option<Occlusion>> {
    let net = net.as_ref();
    let offsets = checked_offsets(net, image, label, config)?;
    // The unoccluded activations: every stage's input, and the last conv's output ("conv5").
    let stages = net.stages()?;
    let last = stages.last().map_or(0, |s| s.layer);
    let mut inputs = Vec::with_capacity(stages.len());
    let mut a = net.scale_input(&image.unsqueeze(0)?)?;
    for stage in &stages {
        let next = net.apply_layer(stage.layer, &a, true)?;
        inputs.push(Map::of(&a)?);
        a = next;
    }
    let conv5 = Map::of(&a)?;
    let clean_prob = candle_nn::ops::softmax_last_dim(&net.logits_from(last, &a)?)?.to_dtype(DType::F32)?;
    let plane = conv5.h * conv5.w;
    let (map, clean_feature_map) = strongest_map(&conv5.values, plane);
    let clean_prob_v = clean_prob.i((0, label))?.to_scalar::<f32>()?;
    let clean_top = clean_prob.argmax(D::Minus1)?.to_vec1::<u32>()?[0];

    // Window starts per stage and offset (the same along both axes: the image is square).
    let geometry: Vec<((usize, usize, usize), usize)> = stages
        .iter()
        .zip(inputs.iter().skip(1).map(|m| m.h).chain([conv5.h]))
        .map(|(st, n_out)| (st.window, n_out))
        .collect();
    let plan = plan(&offsets, config.size, &geometry);
    // Positions as indices into `offsets` (the plans are per offset).
    let indices: Vec<usize> = (0..offsets.len()).collect();
    let positions = positions(&indices);
    let (mut feature_map, mut true_prob, mut top_label) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    // The window a position `(iy, ix)` has after stage `si` (before the first: the square),
    // as origin and side.
    let window = |si: Option<usize>, (iy, ix): (usize, usize)| match si {
        None => (offsets[iy], offsets[ix], config.size),
        Some(si) => (plan[si].0[iy], plan[si].0[ix], plan[si].1),
    };
    for chunk in positions.chunks(config.batch) {
        // The occluder: zeros over the square (0 scaled is 0). The positions' windows' values,
        // one position after another.
        let mut values = vec![0f32; chunk.len() * 3 * config.size * config.size];
        for (si, &stage) in stages.iter().enumerate() {
            let (starts, l) = (&plan[si].0, plan[si].1);
            let (k, st, p) = stage.window;
            let n = (l - 1) * st + k;
            let input = &inputs[si];
            let mut data = vec![0f32; chunk.len() * input.c * n * n];
            data.par_chunks_mut(input.c * n * n)
                .zip(chunk.par_iter().zip(values.par_chunks(values.len() / chunk.len())))
                .for_each(|(out, (&(iy, ix), v))| {
                    let (y, x, pl) = window(si.checked_sub(1), (iy, ix));
                    crop(input, &Window { y, x, l: pl, values: v }, (starts[iy], starts[ix], l), (k, st, p), out)
                });
            let xs = Tensor::from_vec(data, (chunk.len(), input.c, n, n), image.device())?;
            let ys = net.apply_layer(stage.layer, &xs, false)?;
            let (_, _, ho, wo) = ys.dims4()?;
            if (ho, wo) != (l, l) {
                bail!("{stage:?}: a {n}x{n} window gave {ho}x{wo}, expected {l}x{l}")
            }
            values = ys.flatten_all()?.to_vec1::<f32>()?;
        }
        // conv5 whole for each position, then the rest of the network.
        let mut full = Vec::with_capacity(chunk.len() * conv5.values.len());
        for (&position, v) in chunk.iter().zip(values.chunks(values.len() / chunk.len())) {
            let (y, x, l) = window(stages.len().checked_sub(1), position);
            let start = full.len();
            full.extend_from_slice(&conv5.values);
            let dst = &mut full[start..];
            for c in 0..conv5.c {
                for r in 0..l {
                    let from = &v[(c * l + r) * l..(c * l + r + 1) * l];
                    let at = (c * conv5.h + y + r) * conv5.w + x;
                    dst[at..at + l].copy_from_slice(from);
                }
            }
            feature_map.push(dst[map * plane..(map + 1) * plane].iter().sum());
        }
        let c5 = Tensor::from_vec(full, (chunk.len(), conv5.c, conv5.h, conv5.w), image.device())?;
        let prob = candle_nn::ops::softmax_last_dim(&net.logits_from(last, &c5)?)?.to_dtype(DType::F32)?;
        true_prob.extend(prob.i((.., label))?.to_vec1::<f32>()?);
        top_label.extend(prob.argmax(D::Minus1)?.to_vec1::<u32>()?);
        done += chunk.len();
        if steer(done, positions.len()).is_break() {
            return Ok(None);
        }
    }
    Ok(Some(Occlusion {
        config,
        offsets,
        label,
        map,
        feature_map,
        true_prob,
        top_label,
        clean_feature_map,
        clean_prob: clean_prob_v,
        clean_top,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_interval_reaches_the_outputs_whose_windows_touch_it() {
        // 3x3 stride 1 pad 1 over 13: inputs [4, 6) reach outputs 3..=6.
        assert_eq!(touched(4, 6, (3, 1, 1), 13), (3, 7));
        // 7x7 stride 2 pad 1: output o reads [2o - 1, 2o + 6); [0, 48) reaches o = 0..=24.
        assert_eq!(touched(0, 48, (7, 2, 1), 110), (0, 25));
        // 3x3 pool stride 2: [10, 12) is read by windows o = 4 ([8, 11)), 5 ([10, 13)).
        assert_eq!(touched(10, 12, (3, 2, 0), 55), (4, 6));
        // Clamped at the far border.
        assert_eq!(touched(100, 110, (3, 2, 0), 55), (49, 55));
        // Every window of a plan has one length and stays inside its map.
        let plan = plan(&[0, 8, 16, 24], 16, &[((3, 2, 0), 19), ((3, 1, 1), 19)]);
        for (starts, l) in plan {
            assert!(starts.iter().all(|&a| a + l <= 19), "{starts:?} {l}");
        }
    }
}
