//! Local response normalization per image in blocks of positions over all maps, and its
//! closed-form backward.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Lrn(pub(crate) LrnConfig);

/// [`LrnConfig::forward`] as one op on the CPU, with its closed-form backward.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; returns the same shape.
pub fn lrn(x: &Tensor, cfg: &LrnConfig) -> Result<Tensor> {
    x.dims4()?;
    x.contiguous()?.apply_op1(Lrn(*cfg))
}

impl Lrn {
    /// The window of map `c`: `size / 2` maps before, `(size - 1) / 2` after, clipped.
    fn window(&self, c: usize, maps: usize) -> std::ops::Range<usize> {
        c.saturating_sub(self.0.size / 2)..(c + (self.0.size - 1) / 2 + 1).min(maps)
    }

    /// For positions `p0..p0 + len` of one image `x` `[C, HW]`: `scale[c] = k + alpha / size *
    /// sum_{window(c)} x^2` and `pow[c] = scale[c]^-beta`, each `[C, len]`.
    #[inline(always)]
    fn scales(
        &self,
        x: &[f32],
        (maps, hw): (usize, usize),
        (p0, len): (usize, usize),
        scale: &mut [f32],
        pow: &mut [f32],
    ) {
        let LrnConfig { size, alpha, beta, k } = self.0;
        let a = (alpha / size as f64) as f32;
        for c in 0..maps {
            let s = &mut scale[c * len..(c + 1) * len];
            s.fill(0.0);
            for j in self.window(c, maps) {
                for (v, &xj) in s.iter_mut().zip(&x[j * hw + p0..][..len]) {
                    *v += xj * xj;
                }
            }
            s.iter_mut().for_each(|v| *v = k as f32 + a * *v);
        }
        let (p, scale) = (&mut pow[..maps * len], &scale[..maps * len]);
        if beta == 0.75 {
            // s^-3/4 = r sqrt(r) with r = 1 / sqrt(s): two square roots instead of a powf.
            for (p, &s) in p.iter_mut().zip(scale) {
                let r = 1.0 / s.sqrt();
                *p = r * r.sqrt();
            }
        } else {
            let nb = -beta as f32;
            for (p, &s) in p.iter_mut().zip(scale) {
                *p = s.powf(nb);
            }
        }
    }

    /// The forward pass on slices: `x` `[N, C, HW]` (`c` maps of `hw` values) into `y`. Each
    /// image goes in blocks of [`BLOCK`] positions over all its maps, which stay in cache
    /// between the window sums and the output.
    pub(crate) fn forward_into(&self, x: &[f32], c: usize, hw: usize, y: &mut [f32]) -> Result<()> {
        let chw = c * hw;
        if x.len() != y.len() || (chw > 0 && x.len() % chw != 0) {
            bail!("lrn: buffers of {} and {} floats for maps of {c}x{hw}", x.len(), y.len())
        }
        if chw > 0 {
            y.par_chunks_mut(chw).enumerate().for_each(|(i, y)| {
                with_scratch(c * BLOCK, c * BLOCK, |scale, pow, _| {
                    simd(
                        #[inline(always)]
                        || {
                            let x = &x[i * chw..(i + 1) * chw];
                            for p0 in (0..hw).step_by(BLOCK) {
                                let len = BLOCK.min(hw - p0);
                                self.scales(x, (c, hw), (p0, len), scale, pow);
                                for ch in 0..c {
                                    let (y, x) = (&mut y[ch * hw + p0..][..len], &x[ch * hw + p0..][..len]);
                                    for ((y, &x), &p) in y.iter_mut().zip(x).zip(&pow[ch * len..][..len]) {
                                        *y = x * p;
                                    }
                                }
                            }
                        },
                    )
                })
            });
        }
        Ok(())
    }

    /// The backward pass on slices: from the input `x` and the output's gradient `grad`
    /// (`[N, C, HW]`), writes `dx`:
    /// `dx_i = g_i s_i^-b - 2 a b / n x_i sum_{j: i in window(j)} g_j x_j s_j^(-b-1)`,
    /// in blocks of [`BLOCK`] positions as the forward pass.
    pub(crate) fn backward_into(&self, x: &[f32], grad: &[f32], c: usize, hw: usize, dx: &mut [f32]) -> Result<()> {
        let chw = c * hw;
        if x.len() != dx.len() || grad.len() != dx.len() || (chw > 0 && x.len() % chw != 0) {
            bail!("lrn backward: buffers of {} / {} / {} floats for maps of {c}x{hw}", x.len(), grad.len(), dx.len())
        }
        if chw == 0 {
            return Ok(());
        }
        let LrnConfig { size, alpha, beta, .. } = self.0;
        let f = (2.0 * alpha * beta / size as f64) as f32;
        dx.par_chunks_mut(chw).enumerate().for_each(|(i, dx)| {
            with_scratch(c * BLOCK, c * BLOCK, |scale, pow, _| {
                simd(
                    #[inline(always)]
                    || {
                        let (x, g) = (&x[i * chw..(i + 1) * chw], &grad[i * chw..(i + 1) * chw]);
                        for p0 in (0..hw).step_by(BLOCK) {
                            let len = BLOCK.min(hw - p0);
                            self.scales(x, (c, hw), (p0, len), scale, pow);
                            // scale <- t_j = g_j x_j s_j^-b / s_j
                            for j in 0..c {
                                let (xj, gj) = (&x[j * hw + p0..][..len], &g[j * hw + p0..][..len]);
                                let (s, p) = (&mut scale[j * len..][..len], &pow[j * len..][..len]);
                                for (((s, &p), &xj), &gj) in s.iter_mut().zip(p).zip(xj).zip(gj) {
                                    *s = gj * xj * p / *s;
                                }
                            }
                            for ci in 0..c {
                                // j with ci in window(j): ci - (size-1)/2 ..= ci + size/2.
                                let lo = ci.saturating_sub((size - 1) / 2);
                                let hi = (ci + size / 2 + 1).min(c);
                                let d = &mut dx[ci * hw + p0..][..len];
                                d.fill(0.0);
                                for j in lo..hi {
                                    add_into(d, &scale[j * len..(j + 1) * len]);
                                }
                                let at = ci * hw + p0;
                                let (xi, gi, pi) = (&x[at..][..len], &g[at..][..len], &pow[ci * len..][..len]);
                                for (((d, &xi), &gi), &pi) in d.iter_mut().zip(xi).zip(gi).zip(pi) {
                                    *d = gi * pi - f * xi * *d;
                                }
                            }
                        }
                    },
                )
            })
        });
        Ok(())
    }
}

/// Positions per block of [`Lrn`]'s passes: with 96 maps (LRN1), its window sums and powers
/// take 2 x 96 KB and the block's input, gradient and output as much again, in L2.
const BLOCK: usize = 256;

impl CustomOp1 for Lrn {
    fn name(&self) -> &'static str {
        "zf-lrn"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_arg(storage, layout, "lrn")?;
        let (_, c, h, w) = layout.shape().dims4()?;
        let mut y = vec![0f32; x.len()];
        self.forward_into(x, c, h * w, &mut y)?;
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// `dx_i = g_i s_i^-b - 2 a b / n x_i sum_{j: i in window(j)} g_j x_j s_j^(-b-1)`.
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, c, h, w) = x.dims4()?;
        let dx = with_f32(&[x, grad], |t| {
            let mut dx = vec![0f32; t[0].len()];
            self.backward_into(t[0], t[1], c, h * w, &mut dx)?;
            Ok(dx)
        })?;
        Ok(Some(cpu_tensor(dx, x.shape())?))
    }
}
