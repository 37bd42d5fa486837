//! Local response normalization in one pass per image, and its closed-form backward.

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

    /// `scale[c] = k + alpha / size * sum_{window(c)} x^2` for one image `[C, HW]`, then
    /// `pow[c] = scale[c]^-beta`.
    #[inline(always)]
    fn scales(&self, x: &[f32], maps: usize, hw: usize, scale: &mut [f32], pow: &mut [f32]) {
        let LrnConfig { size, alpha, beta, k } = self.0;
        let a = (alpha / size as f64) as f32;
        for c in 0..maps {
            let s = &mut scale[c * hw..(c + 1) * hw];
            s.fill(0.0);
            for j in self.window(c, maps) {
                for (v, &xj) in s.iter_mut().zip(&x[j * hw..(j + 1) * hw]) {
                    *v += xj * xj;
                }
            }
            s.iter_mut().for_each(|v| *v = k as f32 + a * *v);
        }
        let p = &mut pow[..maps * hw];
        if beta == 0.75 {
            // s^-3/4 = r sqrt(r) with r = 1 / sqrt(s): two square roots instead of a powf.
            for (p, &s) in p.iter_mut().zip(scale.iter()) {
                let r = 1.0 / s.sqrt();
                *p = r * r.sqrt();
            }
        } else {
            let nb = -beta as f32;
            for (p, &s) in p.iter_mut().zip(scale.iter()) {
                *p = s.powf(nb);
            }
        }
    }

    /// The forward pass on slices: `x` `[N, C, HW]` (`c` maps of `hw` values) into `y`.
    pub(crate) fn forward_into(&self, x: &[f32], c: usize, hw: usize, y: &mut [f32]) -> Result<()> {
        let chw = c * hw;
        if x.len() != y.len() || (chw > 0 && x.len() % chw != 0) {
            bail!("lrn: buffers of {} and {} floats for maps of {c}x{hw}", x.len(), y.len())
        }
        if chw > 0 {
            y.par_chunks_mut(chw).enumerate().for_each(|(i, y)| {
                with_scratch(chw, chw, |scale, pow, _| {
                    simd(
                        #[inline(always)]
                        || {
                            let x = &x[i * chw..(i + 1) * chw];
                            self.scales(x, c, hw, scale, pow);
                            for ((y, &x), &p) in y.iter_mut().zip(x).zip(pow.iter()) {
                                *y = x * p;
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
    /// `dx_i = g_i s_i^-b - 2 a b / n x_i sum_{j: i in window(j)} g_j x_j s_j^(-b-1)`.
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
            with_scratch(chw, chw, |scale, pow, _| {
                simd(
                    #[inline(always)]
                    || {
                        let (x, g) = (&x[i * chw..(i + 1) * chw], &grad[i * chw..(i + 1) * chw]);
                        self.scales(x, c, hw, scale, pow);
                        // scale <- t_j = g_j x_j s_j^-b / s_j
                        for (((s, &p), &xj), &gj) in scale.iter_mut().zip(pow.iter()).zip(x).zip(g) {
                            *s = gj * xj * p / *s;
                        }
                        for ci in 0..c {
                            // j with ci in window(j): ci - (size-1)/2 ..= ci + size/2.
                            let lo = ci.saturating_sub((size - 1) / 2);
                            let hi = (ci + size / 2 + 1).min(c);
                            let d = &mut dx[ci * hw..(ci + 1) * hw];
                            d.fill(0.0);
                            for j in lo..hi {
                                add_into(d, &scale[j * hw..(j + 1) * hw]);
                            }
                            let range = ci * hw..(ci + 1) * hw;
                            for (((d, &xi), &gi), &pi) in
                                d.iter_mut().zip(&x[range.clone()]).zip(&g[range.clone()]).zip(&pow[range])
                            {
                                *d = gi * pi - f * xi * *d;
                            }
                        }
                    },
                )
            })
        });
        Ok(())
    }
}

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
