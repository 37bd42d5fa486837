//! The fused conv layer: conv + bias + ReLU, forward and backward, im2col and gemm in
//! cache-sized blocks of output rows.

use super::*;

/// How many output positions one grouped gemm aims at (several images of small maps side by
/// side, forward and backward).
const GROUP_COLUMNS: usize = 1024;

/// How many images of `pos` output positions each go side by side into one gemm, or `None`
/// when each image takes its own (maps of more than half a group, or too few images for two
/// groups per thread). The groups' count is a multiple of the threads.
fn group_size(n: usize, pos: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (pos * 2 <= GROUP_COLUMNS && n >= 2 * threads)
        .then(|| n.div_ceil((n * pos).div_ceil(GROUP_COLUMNS).next_multiple_of(threads).min(n)))
}

thread_local! {
    /// The masked output gradient of the Winograd input gradient, reused across calls.
    static MASKED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `relu(conv2d(x, w) + b)` (or without the ReLU) as one op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conv {
    pub(crate) g: ConvGeometry,
    pub(crate) relu: bool,
}

/// Convolution with bias and (when `relu`) a ReLU, fused, on the CPU.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; `w`: `[O, C, k, k]`; `b`: `[O]`
/// - returns: `[N, O, Ho, Wo]`
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, g: ConvGeometry, relu: bool) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if wc != c || kh != g.kernel || kw != g.kernel || b.dims() != [o] {
        bail!(
            "conv2d: input has {c} channels, weight {:?} and bias {:?} for a {}x{} kernel",
            w.dims(),
            b.dims(),
            g.kernel,
            g.kernel
        )
    }
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Conv { g, relu })
}

impl Conv {
    /// The forward pass on slices: `x` `[N, C, H, W]` (`dims`), `w` `[O, C, k, k]`, `b` `[O]`,
    /// into `out` `[N, O, Ho, Wo]` (every element written).
    pub(crate) fn forward_into(
        &self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        dims: (usize, usize, usize, usize),
        out: &mut [f32],
    ) -> Result<()> {
        self.forward_with(x, w, b, dims, out, true)
    }

    /// [`Self::forward_into`]; when `fast`, the 3x3 stride-1 convs by Winograd's F(2x2, 3x3)
    /// (see `winograd.rs`) and convs over few input channels by the direct kernels (see
    /// `direct.rs`), every conv by im2col otherwise.
    pub(super) fn forward_with(
        &self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        (n, c, h, wd): (usize, usize, usize, usize),
        out: &mut [f32],
        fast: bool,
    ) -> Result<()> {
        let s = ConvShape::new(self.g, c, h, wd)?;
        let o = b.len();
        let (rows, pos) = (s.rows(), s.positions());
        if w.len() != o * rows || x.len() != n * c * h * wd || out.len() != n * o * pos {
            bail!(
                "conv2d: buffers of {} / {} / {} floats for {n} images of {c}x{h}x{wd} and {o} filters",
                x.len(),
                w.len(),
                out.len()
            )
        }
        if fast && super::winograd::applies_forward(self.g, s.ho, s.wo, n) {
            super::winograd::forward_into(&s, x, w, b, n, self.relu, out);
            return Ok(());
        }
        if fast && super::direct::applies(c) {
            super::direct::forward_into(&s, x, w, b, n, self.relu, out);
            return Ok(());
        }
        let image = |i: usize, y: &mut [f32], par: Parallelism| {
            let xi = &x[i * c * h * wd..(i + 1) * c * h * wd];
            with_scratch(rows * s.block_rows() * s.wo, 0, |cols, _, phases| {
                s.split_phases(xi, phases);
                for (line, &bias) in y.chunks_exact_mut(pos).zip(b) {
                    line.fill(bias);
                }
                for (oy0, oy1) in s.blocks() {
                    let (p0, len) = (oy0 * s.wo, (oy1 - oy0) * s.wo);
                    let cols = &mut cols[..rows * len];
                    s.im2col(xi, phases, cols, (oy0, oy1));
                    gemm_strided(&mut y[p0..], pos, Mat::new(w, o, rows), Mat::new(cols, rows, len), true, par);
                }
                if self.relu {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            })
        };
        // Fewer images than threads (one image for a projection or a prediction): when the
        // layer has several blocks, the threads take blocks (each a single-threaded gemm into
        // its own buffer, copied into place), balanced to a multiple of the thread count;
        // otherwise they share each gemm.
        let threads = rayon::current_num_threads();
        let blocks = s.ho.div_ceil(s.block_rows()).next_multiple_of(threads);
        let block_parallel = blocks >= 2 && s.ho >= blocks;
        let by_block = |i: usize, y: &mut [f32]| {
            let xi = &x[i * c * h * wd..(i + 1) * c * h * wd];
            let mut phases = Vec::new();
            s.split_phases(xi, &mut phases);
            let step = s.ho.div_ceil(blocks);
            let ranges: Vec<(usize, usize)> = (0..s.ho).step_by(step).map(|y0| (y0, (y0 + step).min(s.ho))).collect();
            let parts: Vec<Vec<f32>> = ranges
                .par_iter()
                .map(|&(oy0, oy1)| {
                    let len = (oy1 - oy0) * s.wo;
                    let mut part = vec![0f32; o * len];
                    for (line, &bias) in part.chunks_exact_mut(len).zip(b) {
                        line.fill(bias);
                    }
                    with_scratch(rows * len, 0, |cols, _, _| {
                        s.im2col(xi, &phases, cols, (oy0, oy1));
                        gemm(&mut part, Mat::new(w, o, rows), Mat::new(cols, rows, len), true, Parallelism::None);
                    });
                    if self.relu {
                        part.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                    part
                })
                .collect();
            for (&(oy0, oy1), part) in ranges.iter().zip(&parts) {
                let len = (oy1 - oy0) * s.wo;
                for (dst, src) in y.chunks_exact_mut(pos).zip(part.chunks_exact(len)) {
                    dst[oy0 * s.wo..][..len].copy_from_slice(src);
                }
            }
        };
        // Small maps (conv3-5, occlusion windows): several images' columns side by side in one
        // gemm, so that the weights are packed once per group instead of once per image and
        // the gemm is wide; groups spread over the threads.
        let grouped = |g: usize, out: &mut [f32]| {
            out.par_chunks_mut(g * o * pos).enumerate().for_each(|(gi, yg)| {
                let (i0, imgs) = (gi * g, yg.len() / (o * pos));
                let width = imgs * pos;
                with_scratch(rows * width, o * width, |cols, tmp, phases| {
                    for j in 0..imgs {
                        let xi = &x[(i0 + j) * c * h * wd..(i0 + j + 1) * c * h * wd];
                        s.split_phases(xi, phases);
                        s.im2col_ld(xi, phases, &mut cols[j * pos..], width, (0, s.ho));
                    }
                    for (line, &bias) in tmp.chunks_exact_mut(width).zip(b) {
                        line.fill(bias);
                    }
                    gemm(tmp, Mat::new(w, o, rows), Mat::new(cols, rows, width), true, Parallelism::None);
                    for (j, y) in yg.chunks_exact_mut(o * pos).enumerate() {
                        for (line, src) in y.chunks_exact_mut(pos).zip(tmp.chunks_exact(width)) {
                            let src = &src[j * pos..(j + 1) * pos];
                            if self.relu {
                                line.iter_mut().zip(src).for_each(|(d, &v)| *d = v.max(0.0));
                            } else {
                                line.copy_from_slice(src);
                            }
                        }
                    }
                })
            })
        };
        match (per_image(n), group_size(n, pos)) {
            ((true, _), Some(g)) => grouped(g, out),
            ((true, par), None) => out.par_chunks_mut(o * pos).enumerate().for_each(|(i, y)| image(i, y, par)),
            ((false, _), _) if block_parallel => out.chunks_mut(o * pos).enumerate().for_each(|(i, y)| by_block(i, y)),
            ((false, par), _) => out.chunks_mut(o * pos).enumerate().for_each(|(i, y)| image(i, y, par)),
        }
        Ok(())
    }

    /// The backward pass on slices: from the input `x` (`dims`), the weight `w`, the forward's
    /// output `res` and its gradient `grad` (`[N, O, Ho, Wo]`), writes the weight and bias
    /// gradients `dw` `[O, C, k, k]` and `db` `[O]` and, when given, the input gradient `dx`
    /// (every element of each written).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_into(
        &self,
        x: &[f32],
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        dims: (usize, usize, usize, usize),
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
    ) -> Result<()> {
        self.backward_with(x, w, res, grad, dims, dx, dw, db, true)
    }

    /// [`Self::backward_into`]; when `fast`, the 3x3 stride-1 convs' input and weight
    /// gradients by Winograd's F(2x2, 3x3) (see `winograd.rs`) and conv1's weight gradient by
    /// the direct kernels (see `direct.rs`), every gradient by im2col otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_with(
        &self,
        x: &[f32],
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        (n, c, h, wd): (usize, usize, usize, usize),
        mut dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
        fast: bool,
    ) -> Result<()> {
        let o = db.len();
        let s = ConvShape::new(self.g, c, h, wd)?;
        let (rows, pos, chw) = (s.rows(), s.positions(), c * h * wd);
        if w.len() != o * rows
            || dw.len() != o * rows
            || x.len() != n * chw
            || res.len() != n * o * pos
            || grad.len() != n * o * pos
            || dx.as_ref().is_some_and(|d| d.len() != n * chw)
        {
            bail!("conv2d backward: buffers do not fit {n} images of {c}x{h}x{wd} and {o} filters")
        }
        // The input gradient of a 3x3 stride-1 conv is itself one (the masked gradient through
        // the filters flipped and transposed, padding `2 - p`): by Winograd, as the forward pass;
        // and the weight gradient by Winograd's adjoint (`winograd::weight_grad_into`).
        let p = self.g.padding;
        let transposed = ConvGeometry::new(3, 1, 2usize.saturating_sub(p));
        let by_winograd = fast
            && self.g.kernel == 3
            && self.g.stride == 1
            && p <= 2
            && super::winograd::applies(transposed, h, wd, n);
        let dw_by_winograd = by_winograd && super::winograd::applies(self.g, s.ho, s.wo, n);
        if by_winograd && (dx.is_some() || dw_by_winograd) {
            // Not in `with_scratch`'s buffers: the Winograd items running on this thread take
            // those.
            with_kept(&MASKED, |masked| {
                let gm: &[f32] = if self.relu {
                    masked.resize(grad.len(), 0.0);
                    relu_mask(masked, grad, res, true);
                    masked
                } else {
                    grad
                };
                if let Some(dx) = dx.take() {
                    let s2 = ConvShape::new(transposed, o, s.ho, s.wo)?;
                    let mut flipped = vec![0f32; c * o * 9];
                    for (oc, filters) in w.chunks_exact(c * 9).enumerate() {
                        for (ic, f) in filters.chunks_exact(9).enumerate() {
                            for (k, &v) in f.iter().enumerate() {
                                flipped[(ic * o + oc) * 9 + 8 - k] = v;
                            }
                        }
                    }
                    super::winograd::forward_into(&s2, gm, &flipped, &vec![0f32; c], n, false, dx);
                }
                if dw_by_winograd {
                    super::winograd::weight_grad_into(&s, x, gm, n, dw);
                    db.par_iter_mut().enumerate().for_each(|(oc, d)| {
                        *d = (0..n).map(|i| lane_sum(&gm[(i * o + oc) * pos..][..pos])).sum();
                    });
                }
                Ok::<_, candle_core::Error>(())
            })?;
            if dw_by_winograd {
                return Ok(());
            }
        }
        // One image: its weight and bias gradients added into `dw`, `db`, its input gradient
        // written into `dx`.
        let image = |i: usize, dx: Option<&mut [f32]>, dw: &mut [f32], db: &mut [f32], par: Parallelism| {
            // Without a ReLU the gradient is used as it is.
            let masked = if self.relu { o * pos } else { 0 };
            with_scratch(rows * s.block_rows() * s.wo, masked, |cols, gm, phases| {
                let range = i * o * pos..(i + 1) * o * pos;
                let gm: &[f32] = if self.relu {
                    relu_mask(gm, &grad[range.clone()], &res[range], true);
                    gm
                } else {
                    &grad[range]
                };
                for (d, line) in db.iter_mut().zip(gm.chunks_exact(pos)) {
                    *d += lane_sum(line);
                }
                let xi = &x[i * chw..(i + 1) * chw];
                if dx.is_none() && super::direct::grad_applies(c, o) {
                    super::direct::weight_grad_into(&s, xi, gm, dw);
                    return;
                }
                s.split_phases(xi, phases);
                let mut dx = dx;
                if let Some(dx) = dx.as_deref_mut() {
                    dx.fill(0.0);
                }
                for (oy0, oy1) in s.blocks() {
                    let (p0, len) = (oy0 * s.wo, (oy1 - oy0) * s.wo);
                    let cols = &mut cols[..rows * len];
                    let gm_block = Mat { data: &gm[p0..], rows: o, cols: len, rs: pos, cs: 1 };
                    s.im2col(xi, phases, cols, (oy0, oy1));
                    gemm(dw, gm_block, Mat::new(cols, rows, len).t(), true, par);
                    if let Some(dx) = dx.as_deref_mut() {
                        gemm(cols, Mat::new(w, o, rows).t(), gm_block, false, par);
                        s.col2im(cols, dx, (oy0, oy1));
                    }
                }
            })
        };
        // Small maps: a group of images side by side (as in the forward pass), one weight
        // gradient gemm with the group's positions as its depth, one input gradient gemm.
        let group = |i0: usize, imgs: usize, dx: Option<&mut [f32]>, dw: &mut [f32], db: &mut [f32]| {
            let width = imgs * pos;
            with_scratch(rows * width, o * width, |cols, gm, phases| {
                for j in 0..imgs {
                    let i = i0 + j;
                    for (oc, line) in gm.chunks_exact_mut(width).enumerate() {
                        let range = (i * o + oc) * pos..(i * o + oc + 1) * pos;
                        relu_mask(&mut line[j * pos..(j + 1) * pos], &grad[range.clone()], &res[range], self.relu);
                    }
                    let xi = &x[i * chw..(i + 1) * chw];
                    s.split_phases(xi, phases);
                    s.im2col_ld(xi, phases, &mut cols[j * pos..], width, (0, s.ho));
                }
                for (d, line) in db.iter_mut().zip(gm.chunks_exact(width)) {
                    *d += lane_sum(line);
                }
                gemm(dw, Mat::new(gm, o, width), Mat::new(cols, rows, width).t(), true, Parallelism::None);
                if let Some(dx) = dx {
                    gemm(cols, Mat::new(w, o, rows).t(), Mat::new(gm, o, width), false, Parallelism::None);
                    for (j, dx) in dx.chunks_exact_mut(chw).enumerate() {
                        dx.fill(0.0);
                        s.col2im_ld(&cols[j * pos..], width, dx, (0, s.ho));
                    }
                }
            })
        };
        match (per_image(n), group_size(n, pos)) {
            ((true, _), Some(g)) => accumulate(n.div_ceil(g), g * chw, dx, dw, db, |k, dx, dw, db| {
                group(k * g, g.min(n - k * g), dx, dw, db)
            }),
            ((true, par), None) => accumulate(n, chw, dx, dw, db, |i, dx, dw, db| image(i, dx, dw, db, par)),
            ((false, par), _) => {
                dw.fill(0.0);
                db.fill(0.0);
                for i in 0..n {
                    image(i, dx.as_deref_mut().map(|d| &mut d[i * chw..(i + 1) * chw]), dw, db, par);
                }
            }
        }
        Ok(())
    }
}

/// Runs `f(k, dx_k, dw, db)` for the work items `k < count` (item `k`'s input gradient is
/// chunk `k` of `chunk` floats of `dx`, when given), spread over the threads with at most one
/// weight and bias accumulator per thread, split at fixed places: the sums (and so training)
/// come out the same on every run. Writes the total into `dw` and `db`.
fn accumulate(
    count: usize,
    chunk: usize,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
    f: impl Fn(usize, Option<&mut [f32]>, &mut [f32], &mut [f32]) + Sync,
) {
    let split = dw.len();
    let len = split + db.len();
    let min = count / rayon::current_num_threads();
    let item = |k: usize, dx: Option<&mut [f32]>, mut acc: Vec<f32>| {
        let (dw, db) = acc.split_at_mut(split);
        f(k, dx, dw, db);
        acc
    };
    let add = |mut a: Vec<f32>, b: Vec<f32>| {
        add_into(&mut a, &b);
        a
    };
    let acc = match dx {
        Some(dx) => dx
            .par_chunks_mut(chunk)
            .enumerate()
            .with_min_len(min)
            .fold(|| vec![0f32; len], |acc, (k, d)| item(k, Some(d), acc))
            .reduce(|| vec![0f32; len], add),
        None => (0..count)
            .into_par_iter()
            .with_min_len(min)
            .fold(|| vec![0f32; len], |acc, k| item(k, None, acc))
            .reduce(|| vec![0f32; len], add),
    };
    dw.copy_from_slice(&acc[..split]);
    db.copy_from_slice(&acc[split..]);
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "zf-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_arg(xs, xl, "conv2d")?, f32_arg(ws, wl, "conv2d")?, f32_arg(bs, bl, "conv2d")?);
        let (n, c, h, wd) = xl.shape().dims4()?;
        let o = wl.shape().dims4()?.0;
        let s = ConvShape::new(self.g, c, h, wd)?;
        let mut out = vec![0f32; n * o * s.positions()];
        self.forward_into(x, w, b, (n, c, h, wd), &mut out)?;
        Ok((CpuStorage::F32(out), Shape::from((n, o, s.ho, s.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims4()?;
        let need_dx = x.track_op();
        let (dx, dw, db) = with_f32(&[x, w, res, grad], |t| {
            let mut dx = need_dx.then(|| vec![0f32; t[0].len()]);
            let (mut dw, mut db) = (vec![0f32; t[1].len()], vec![0f32; b.elem_count()]);
            self.backward_into(t[0], t[1], t[2], t[3], dims, dx.as_deref_mut(), &mut dw, &mut db)?;
            Ok((dx, dw, db))
        })?;
        gradients([(x, dx), (w, Some(dw)), (b, Some(db))])
    }
}
