//! Each fused op against the plain candle composition it replaces: forward and gradients.
#![allow(clippy::unwrap_used)]

use super::deconv::ConvTranspose;
use super::*;
use candle_core::{Device, Var};

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-6);
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() / scale
}

fn var(shape: &[usize], std: f64) -> Var {
    Var::from_tensor(&Tensor::randn(0f32, std as f32, shape, &Device::Cpu).unwrap()).unwrap()
}

/// Forward values and the gradients of a random weighted sum agree with candle's ops.
fn check(name: &str, vars: &[&Var], ours: Tensor, theirs: Tensor, tol: f32) {
    assert_eq!(ours.dims(), theirs.dims(), "{name}: shapes");
    let d = max_rel_diff(&ours, &theirs);
    assert!(d < tol, "{name}: forward differs by {d}");
    let r = Tensor::randn(0f32, 1.0, ours.shape(), &Device::Cpu).unwrap();
    let ga = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gb = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (k, v) in vars.iter().enumerate() {
        let (a, b) = (ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
        let d = max_rel_diff(a, b);
        assert!(d < tol, "{name}: gradient of argument {k} differs by {d}");
    }
}

#[test]
fn conv_agrees_with_candle_forward_and_backward() {
    for (g, side, n) in [
        (ConvGeometry::new(7, 2, 1), 23, 3),
        (ConvGeometry::new(5, 2, 0), 23, 1),
        (ConvGeometry::new(3, 1, 1), 9, 4),
        (ConvGeometry::new(11, 4, 2), 30, 2),
        // Big enough for several blocks of output rows (4 rows of 48 per block), with one
        // image (the threads split the blocks) and with two.
        (ConvGeometry::new(7, 2, 1), 100, 2),
        (ConvGeometry::new(7, 2, 1), 100, 1),
        // Small maps and many images: the forward pass puts several images side by side in
        // one gemm (uneven groups).
        (ConvGeometry::new(3, 1, 1), 13, 41),
        (ConvGeometry::new(3, 1, 1), 6, 7),
    ] {
        for relu in [true, false] {
            let x = var(&[n, 3, side, side], 1.0);
            let w = var(&[4, 3, g.kernel, g.kernel], 0.1);
            let b = var(&[4], 0.1);
            let ours = conv2d(x.as_tensor(), w.as_tensor(), b.as_tensor(), g, relu).unwrap();
            let plain = x
                .as_tensor()
                .conv2d(w.as_tensor(), g.padding, g.stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { plain.relu().unwrap() } else { plain };
            check(&format!("{g:?} relu {relu} batch {n}"), &[&x, &w, &b], ours, theirs, 1e-4);
        }
    }
}

#[test]
fn conv_skips_the_gradient_of_a_constant_input() {
    let g = ConvGeometry::new(3, 1, 1);
    let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
    let w = var(&[4, 3, 3, 3], 0.1);
    let b = var(&[4], 0.1);
    let grads = conv2d(&x, w.as_tensor(), b.as_tensor(), g, true).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
}

#[test]
fn im2col_and_col2im_are_adjoint() {
    // <im2col(x), c> = <x, col2im(c)> for random x and c.
    for g in [ConvGeometry::new(7, 2, 1), ConvGeometry::new(3, 1, 1), ConvGeometry::new(5, 3, 2)] {
        let s = ConvShape::new(g, 2, 11, 9).unwrap();
        let x: Vec<f32> = (0..2 * 11 * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let c: Vec<f32> = (0..s.rows() * s.positions()).map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0).collect();
        let mut phases = Vec::new();
        s.split_phases(&x, &mut phases);
        let mut cols = vec![f32::NAN; c.len()];
        let mut back = vec![0f32; x.len()];
        // Block by block (two rows, then the rest) must give the whole.
        let rows = s.rows();
        for (oy0, oy1) in [(0, 2), (2, s.ho)] {
            let len = (oy1 - oy0) * s.wo;
            let mut block = vec![f32::NAN; rows * len];
            s.im2col(&x, &phases, &mut block, (oy0, oy1));
            let mut cblock = vec![0f32; rows * len];
            for r in 0..rows {
                cols[r * s.positions() + oy0 * s.wo..][..len].copy_from_slice(&block[r * len..][..len]);
                cblock[r * len..][..len].copy_from_slice(&c[r * s.positions() + oy0 * s.wo..][..len]);
            }
            s.col2im(&cblock, &mut back, (oy0, oy1));
        }
        let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
        assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{g:?}: {lhs} vs {rhs}");
    }
}

#[test]
fn linear_agrees_with_candle_forward_and_backward() {
    // Up to 64 rows take the paths that split the outputs (forward) and the inputs (input
    // gradient) over the threads (uneven last blocks with 37 outputs and 7 inputs); more rows
    // take the threaded gemm. 300 inputs give the input gradient's register tiles whole vectors
    // of columns (and a scalar tail), 13 rows a part-filled last tile of rows.
    let cases =
        [(1, 7, 6, true), (1, 7, 37, true), (5, 7, 6, true), (3, 7, 6, false), (40, 7, 37, true), (70, 7, 37, true)];
    for (n, i, o, relu) in cases.into_iter().chain([(13, 300, 37, true), (1, 300, 5, false), (64, 300, 37, true)]) {
        let x = var(&[n, i], 1.0);
        let w = var(&[o, i], 0.3);
        let b = var(&[o], 0.3);
        let ours = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), relu).unwrap();
        let plain = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
        let theirs = if relu { plain.relu().unwrap() } else { plain };
        check(&format!("linear batch {n} inputs {i} outputs {o} relu {relu}"), &[&x, &w, &b], ours, theirs, 1e-5);
    }
}

#[test]
fn lrn_agrees_with_candle_forward_and_backward() {
    // Small maps (one block of positions), and maps of 575 positions: two whole blocks and a
    // part-filled one.
    for shape in [[2, 6, 3, 4], [2, 7, 23, 25]] {
        for (size, beta) in [(5, 0.75), (3, 0.5), (4, 0.75), (1, 1.0)] {
            let cfg = LrnConfig { size, alpha: 0.3, beta, k: 2.0 };
            let x = var(&shape, 2.0);
            let ours = lrn(x.as_tensor(), &cfg).unwrap();
            let theirs = cfg.forward(x.as_tensor()).unwrap();
            check(&format!("lrn {shape:?} size {size} beta {beta}"), &[&x], ours, theirs, 1e-5);
        }
    }
}

#[test]
fn pool_values_agree_with_gather() {
    let x = var(&[2, 3, 7, 7], 1.0);
    let g = crate::config::PoolGeometry { kernel: 3, stride: 2, ceil_mode: true };
    let (_, sw) = g.forward_with_switches(&x.as_tensor().detach()).unwrap();
    let ours = pool_values(x.as_tensor(), &sw.indices).unwrap();
    let theirs = x
        .as_tensor()
        .flatten_from(2)
        .unwrap()
        .gather(&sw.indices.flatten_from(2).unwrap(), 2)
        .unwrap()
        .reshape(sw.indices.shape())
        .unwrap();
    check("pool values", &[&x], ours, theirs, 1e-6);
}

#[test]
fn unpool_agrees_with_scatter_and_rejects_bad_switches() {
    let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 7), &Device::Cpu).unwrap();
    let g = crate::config::PoolGeometry { kernel: 3, stride: 2, ceil_mode: true };
    let (v, sw) = g.forward_with_switches(&x).unwrap();
    let ours = unpool(&v, &sw.indices, (7, 7)).unwrap();
    let theirs = Tensor::zeros((2, 3, 49), DType::F32, &Device::Cpu)
        .unwrap()
        .scatter(&sw.indices.flatten_from(2).unwrap(), &v.flatten_from(2).unwrap(), 2)
        .unwrap()
        .reshape((2, 3, 7, 7))
        .unwrap();
    assert_eq!(max_rel_diff(&ours, &theirs), 0.0);
    let bad = (sw.indices.ones_like().unwrap() * 49.0).unwrap();
    assert!(unpool(&v, &bad, (7, 7)).is_err());
}

/// The one gemm wrapper against a naive product, on shapes that leave remainders in every
/// microkernel tile. `gemm` picks its AVX-512 or AVX2/FMA kernels at run time
/// (gemm-common's `feature_detected!("avx512f")`, `std::arch::is_x86_feature_detected!`): the
/// dispatch is the library's, so this checks whichever path this CPU takes.
#[test]
fn gemm_agrees_with_a_naive_product_on_odd_shapes() {
    for (m, k, n) in [(1, 1, 1), (7, 13, 5), (33, 17, 49), (64, 147, 35)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 23) as f32 - 11.0) / 5.0).collect();
        let mut got = vec![0f32; m * n];
        gemm(&mut got, Mat::new(&a, m, k), Mat::new(&b, k, n), false, gemm::Parallelism::None);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((got[i * n + j] - want).abs() <= 1e-4 * want.abs().max(1.0), "{m}x{k}x{n} at ({i},{j})");
            }
        }
    }
}

/// The 3x3 stride-1 forward by Winograd's F(2x2, 3x3) against the im2col path: odd and even
/// maps (tiles past the edge), padding 0 and 1, one image and uneven groups of images, with and
/// without the ReLU; and the conv op takes it for a batch, and for one image of a wide map
/// (64x64: 1024 tiles, the gemms sharing the threads).
#[test]
fn winograd_forward_agrees_with_im2col() {
    for (pad, side, n, c, o) in
        [(1, 13, 16, 24, 32), (1, 6, 1, 5, 7), (0, 13, 3, 8, 4), (0, 4, 2, 3, 2), (1, 2, 5, 4, 3), (1, 64, 1, 3, 4)]
    {
        let g = ConvGeometry::new(3, 1, pad);
        let x = Tensor::randn(0f32, 1.0, (n, c, side, side), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 0.2, (o, c, 3, 3), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 0.1, o, &Device::Cpu).unwrap();
        let out_side = side + 2 * pad - 2;
        let len = n * o * out_side * out_side;
        for relu in [true, false] {
            let conv = Conv { g, relu };
            let (mut ours, mut direct, mut op) = (vec![f32::NAN; len], vec![f32::NAN; len], vec![f32::NAN; len]);
            with_f32(&[&x, &w, &b], |t| {
                let s = ConvShape::new(g, c, side, side)?;
                winograd::forward_into(&s, t[0], t[1], t[2], n, relu, &mut ours);
                conv.forward_with(t[0], t[1], t[2], (n, c, side, side), &mut direct, false)?;
                conv.forward_into(t[0], t[1], t[2], (n, c, side, side), &mut op)
            })
            .unwrap();
            let case = format!("pad {pad} side {side} batch {n} relu {relu}");
            assert!(ours.iter().all(|v| v.is_finite()), "{case}: an output not written");
            let scale = direct.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = ours.iter().zip(&direct).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff <= 1e-5 * scale, "{case}: differs by {diff} (of {scale})");
            // Two computations, not one under two names; and the op's own choice.
            assert!(ours != direct || side <= 2, "{case}: identical to the bit");
            let expect = if winograd::applies_forward(g, out_side, out_side, n) { &ours } else { &direct };
            assert_eq!(&op, expect, "{case}: the op's path");
        }
    }
}

/// The 3x3 stride-1 backward by Winograd (the input gradient through the flipped filters, the
/// weight gradient by the adjoint transforms) against the im2col path: odd and even maps,
/// padding 0 and 1, batches of one chunk and of several (70 images of 16 tiles: two chunks of
/// the weight gradient's gemms), with and without the ReLU; and the op's own choice of path.
#[test]
fn winograd_backward_agrees_with_im2col() {
    for (pad, side, n, c, o) in
        [(1, 13, 16, 24, 32), (1, 6, 3, 5, 7), (0, 13, 3, 8, 4), (0, 4, 2, 3, 2), (1, 2, 5, 4, 3), (1, 7, 70, 3, 5)]
    {
        let g = ConvGeometry::new(3, 1, pad);
        let out_side = side + 2 * pad - 2;
        let x = Tensor::randn(0f32, 1.0, (n, c, side, side), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 0.2, (o, c, 3, 3), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 0.1, o, &Device::Cpu).unwrap();
        let grad = Tensor::randn(0f32, 1.0, (n, o, out_side, out_side), &Device::Cpu).unwrap();
        let dims = (n, c, side, side);
        for relu in [true, false] {
            let conv = Conv { g, relu };
            let case = format!("pad {pad} side {side} batch {n} relu {relu}");
            // [dx, dw, db] by im2col, by the op, and the weight gradient by Winograd alone.
            let fresh = || [vec![f32::NAN; n * c * side * side], vec![f32::NAN; o * c * 9], vec![f32::NAN; o]];
            let (mut slow, mut op, mut ours) = (fresh(), fresh(), vec![f32::NAN; o * c * 9]);
            with_f32(&[&x, &w, &b, &grad], |t| {
                let mut res = vec![0f32; n * o * out_side * out_side];
                conv.forward_with(t[0], t[1], t[2], dims, &mut res, false)?;
                let [dx, dw, db] = &mut slow;
                conv.backward_with(t[0], t[1], &res, t[3], dims, Some(dx), dw, db, false)?;
                let [dx, dw, db] = &mut op;
                conv.backward_into(t[0], t[1], &res, t[3], dims, Some(dx), dw, db)?;
                let mut masked = vec![0f32; res.len()];
                relu_mask(&mut masked, t[3], &res, relu);
                winograd::weight_grad_into(&ConvShape::new(g, c, side, side)?, t[0], &masked, n, &mut ours);
                Ok(())
            })
            .unwrap();
            let differ = |a: &[f32], b: &[f32]| {
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                (a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs())), scale)
            };
            assert!(ours.iter().all(|v| v.is_finite()), "{case}: a weight gradient not written");
            let (diff, scale) = differ(&ours, &slow[1]);
            assert!(diff <= 1e-5 * scale, "{case}: weight gradient differs by {diff} (of {scale})");
            assert!(ours != slow[1], "{case}: identical to the bit");
            let fast = winograd::applies(g, out_side, out_side, n);
            if fast {
                assert_eq!(op[1], ours, "{case}: the op's weight gradient is not Winograd's");
            } else {
                assert_eq!(op[1], slow[1], "{case}: the op's weight gradient is not im2col's");
            }
            for (k, what) in [(0, "input"), (2, "bias")] {
                let (diff, scale) = differ(&op[k], &slow[k]);
                assert!(diff <= 1e-5 * scale, "{case}: {what} gradient differs by {diff} (of {scale})");
            }
        }
    }
}

#[test]
fn direct_kernels_agree_with_candle() {
    // Convs over few input channels (conv1's 3 colours) take the direct forward pass and weight
    // gradient: against candle's conv, over kernels, strides and paddings, output widths
    // around the vector lengths (8 and 16 lanes, and below), filter counts that do not fill the
    // tiles, one image (the threads take filters) and several.
    for (g, c, side, n, o) in [
        (ConvGeometry::new(7, 2, 1), 3, 224, 2, 4),
        (ConvGeometry::new(7, 2, 1), 3, 45, 3, 7),
        (ConvGeometry::new(11, 4, 2), 3, 67, 1, 13),
        (ConvGeometry::new(5, 3, 0), 1, 40, 5, 4),
        (ConvGeometry::new(3, 2, 1), 4, 17, 2, 6),
        (ConvGeometry::new(7, 2, 3), 2, 9, 4, 3),
    ] {
        let x = Tensor::randn(0f32, 1.0, (n, c, side, side), &Device::Cpu).unwrap();
        let w = var(&[o, c, g.kernel, g.kernel], 0.1);
        let b = var(&[o], 0.1);
        for relu in [true, false] {
            let case = format!("{g:?} {c} channels, side {side}, batch {n}, {o} filters, relu {relu}");
            // The input is a constant: its gradient is not asked for, so the weight gradient
            // takes the direct kernel.
            let ours = conv2d(&x, w.as_tensor(), b.as_tensor(), g, relu).unwrap();
            let plain = x
                .conv2d(w.as_tensor(), g.padding, g.stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { plain.relu().unwrap() } else { plain };
            check(&case, &[&w, &b], ours.clone(), theirs, 1e-4);
            // The op's path is the direct kernel (every output written), not im2col under
            // another name.
            let (side_out, len) = (ours.dim(3).unwrap(), ours.elem_count());
            let (mut direct, mut im2col) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            with_f32(&[&x, w.as_tensor(), b.as_tensor()], |t| {
                let s = ConvShape::new(g, c, side, side)?;
                direct::forward_into(&s, t[0], t[1], t[2], n, relu, &mut direct);
                Conv { g, relu }.forward_with(t[0], t[1], t[2], (n, c, side, side), &mut im2col, false)
            })
            .unwrap();
            assert!(direct.iter().all(|v| v.is_finite()), "{case}: an output not written");
            assert!(ours.flatten_all().unwrap().to_vec1::<f32>().unwrap() == direct, "{case}: not the op's path");
            assert!(direct != im2col || side_out < 4, "{case}: identical to im2col to the bit");
        }
    }
}

#[test]
fn transposed_windows_agree_with_the_dense_transposed_conv() {
    // (geometry, map side, images, window origin and size): 3x3 stride-1 windows that the
    // Winograd forward takes (a wide map at batch 1, a small one at a batch of the threads),
    // at the map's corners and inside, and others that stay on im2col.
    let threads = rayon::current_num_threads();
    for (g, side, n, (y0, x0), (bh, bw), winograd) in [
        (ConvGeometry::new(3, 1, 1), 70, 1, (0, 0), (66, 65), true),
        (ConvGeometry::new(3, 1, 1), 70, 1, (3, 4), (67, 66), true),
        (ConvGeometry::new(3, 1, 0), 72, 1, (1, 2), (69, 68), true),
        (ConvGeometry::new(3, 1, 2), 67, 1, (2, 0), (66, 69), true),
        (ConvGeometry::new(3, 1, 1), 13, threads, (2, 5), (9, 8), true),
        (ConvGeometry::new(3, 1, 1), 13, threads, (0, 0), (13, 13), true),
        (ConvGeometry::new(3, 1, 1), 13, 1, (2, 5), (9, 8), false),
        (ConvGeometry::new(5, 2, 0), 23, 2, (1, 2), (6, 7), false),
    ] {
        let (ho, wo) = (g.output_size(side).unwrap(), g.output_size(side).unwrap());
        let (o, c) = (5, 4);
        let block = Tensor::randn(0f32, 1.0, (n, o, bh, bw), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 0.3, (o, c, g.kernel, g.kernel), &Device::Cpu).unwrap();
        let (ours, (oy, ox)) = conv_transpose2d_window(&block, &w, g, (y0, x0), (side, side)).unwrap();
        // The same transposed conv over the whole map, the block placed in zeros.
        let full = block.pad_with_zeros(2, y0, ho - y0 - bh).unwrap().pad_with_zeros(3, x0, wo - x0 - bw).unwrap();
        let op = side - ((ho - 1) * g.stride + g.kernel - 2 * g.padding);
        let dense = full.conv_transpose2d(&w, g.padding, op, g.stride, 1).unwrap();
        let (_, _, h, ww) = ours.dims4().unwrap();
        let theirs = dense.narrow(2, oy, h).unwrap().narrow(3, ox, ww).unwrap();
        let name = format!("{g:?} {side}px x{n} at ({y0}, {x0})");
        let d = max_rel_diff(&ours, &theirs);
        assert!(d < 1e-5, "{name}: differs by {d}");
        // Outside the returned block the dense result is zero.
        let total = dense.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        let inside = theirs.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((total - inside).abs() <= 1e-5 * total, "{name}: the dense result reaches past the block");
        let s = ConvShape {
            g,
            c,
            h,
            w: ww,
            ho: bh,
            wo: bw,
            py: (oy + g.padding) - y0 * g.stride,
            px: (ox + g.padding) - x0 * g.stride,
        };
        assert_eq!(ConvTranspose { s }.as_forward(n, o).is_some(), winograd, "{name}: the path taken");
    }
}
