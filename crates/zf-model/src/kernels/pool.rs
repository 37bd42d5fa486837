//! Max-pool values gathered through the switches; the gradient scattered back to them.

use super::*;

#[derive(Clone, Copy, Debug)]
struct PoolValues;

/// The pooled values `x[n, c, indices[n, c, i, j]]` as one op whose backward scatters each
/// gradient to its switch.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; `indices`: `[N, C, Ho, Wo]` (`u32`, flat in `H x W`)
/// - returns: `[N, C, Ho, Wo]`
pub fn pool_values(x: &Tensor, indices: &Tensor) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    let (ni, ci, _, _) = indices.dims4()?;
    if (n, c) != (ni, ci) || indices.dtype() != DType::U32 {
        bail!("pool_values: input {:?} and switches {:?} ({:?}) do not fit", x.dims(), indices.dims(), indices.dtype())
    }
    x.contiguous()?.apply_op2(&indices.contiguous()?, PoolValues)
}

impl CustomOp2 for PoolValues {
    fn name(&self) -> &'static str {
        "zf-pool-values"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, is: &CpuStorage, il: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_arg(xs, xl, "pool_values")?;
        let idx = u32_arg(is, il, "pool_values")?;
        let (_, _, h, w) = xl.shape().dims4()?;
        let (_, _, ho, wo) = il.shape().dims4()?;
        let mut out = vec![0f32; idx.len()];
        if ho * wo > 0 {
            out.par_chunks_mut(ho * wo).zip(idx.par_chunks(ho * wo)).enumerate().for_each(|(p, (o, ix))| {
                let plane = &x[p * h * w..(p + 1) * h * w];
                for (o, &k) in o.iter_mut().zip(ix) {
                    *o = plane[k as usize];
                }
            });
        }
        Ok((CpuStorage::F32(out), il.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        indices: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let (_, _, ho, wo) = indices.dims4()?;
        let idx = indices.contiguous()?;
        let (storage, layout) = idx.storage_and_layout();
        let (Storage::Cpu(CpuStorage::U32(iv)), Some((a, b))) = (&*storage, layout.contiguous_offsets()) else {
            bail!("pool_values: expects contiguous u32 CPU switches")
        };
        let idx = &iv[a..b];
        let dx = with_f32(&[grad], |t| {
            let grad = t[0];
            let mut dx = vec![0f32; n * c * h * w];
            if ho * wo > 0 && h * w > 0 {
                dx.par_chunks_mut(h * w).enumerate().for_each(|(p, plane)| {
                    let range = p * ho * wo..(p + 1) * ho * wo;
                    for (&k, &g) in idx[range.clone()].iter().zip(&grad[range]) {
                        plane[k as usize] += g;
                    }
                });
            }
            Ok(dx)
        })?;
        Ok((Some(cpu_tensor(dx, x.shape())?), None))
    }
}
