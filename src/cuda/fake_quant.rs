//! cuda/fake_quant.rs — the host side of `kernels/fake_quant.cu` (quantization-aware training):
//! wrappers generic over [`Exec`] that check a [`FakeQuantizer`]'s parameters and the buffers
//! before launching the forward (`fake_quant_f32`) or the local-gradient kernel
//! (`fake_quant_grad_f32`), and, with the `cuda` feature, the public entry points on a
//! [`CudaDevice`](super::CudaDevice). The simulation tests below run the kernels on the CPU
//! against `reference::fake_quantize` / `reference::fake_quantize_grad` and the CPU loops of
//! `qat::FakeQuantizer`, bit for bit; `tests/gpu.rs` does the same on a GPU.
//!
//! Layout: the tensor is `[channels, inner]` row-major, as [`FakeQuantizer`] sees it (one
//! parameter set per row when per channel); the kernels' channel formula is `(i / inner) % groups`
//! with `groups = channels`.

use super::exec::{Exec, Grid};
use super::ops::{check_status, need, to_i32};
use super::params::{FakeQuantParams, Status};
use super::registry::KernelId;
use crate::error::{Error, Result};
use crate::qat::FakeQuantizer;

/// Threads per block of both entries (`I8RT_ENTRY(…, 256)`).
const THREADS: u32 = 256;

/// Grid-stride launch over `len` elements: one thread per element up to 4096 blocks.
fn grid(len: usize) -> Grid {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 4096) as u32;
    Grid {
        grid: [blocks, 1, 1],
        block: [THREADS, 1, 1],
        smem: 0,
    }
}

/// The quantizer's per-channel scales and integer zero points (validated: finite scale > 0,
/// zero point in range), and `(groups, inner)` for a tensor of `len` elements.
fn launch_params(fq: &FakeQuantizer, len: usize) -> Result<(Vec<f32>, Vec<i32>, usize, usize)> {
    let groups = fq.channels();
    let mut scales = Vec::with_capacity(groups);
    let mut zps = Vec::with_capacity(groups);
    for c in 0..groups {
        let p = fq.params(c)?;
        scales.push(p.scale());
        zps.push(p.zero_point());
    }
    let inner = if groups == 1 {
        len
    } else if len.is_multiple_of(groups) {
        len / groups
    } else {
        return Err(Error::Dimension {
            what: "fake-quant input",
            detail: format!("{len} elements do not split into {groups} channels"),
        });
    };
    Ok((scales, zps, groups, inner))
}

/// What both entries share: `fq`'s per-channel parameters uploaded, a cleared status, the
/// parameter block with those (and the geometry) filled in for `launch` to complete with its
/// buffers and launch, then the status read (waits for the executor).
fn launch_checked<E: Exec>(
    e: &E,
    tensor: &str,
    fq: &FakeQuantizer,
    (scales, zps, groups, inner): (Vec<f32>, Vec<i32>, usize, usize),
    len: usize,
    launch: impl FnOnce(FakeQuantParams) -> Result<()>,
) -> Result<()> {
    let sb = e.upload(&scales)?;
    let zb = e.upload(&zps)?;
    let mut status = e.upload(&[Status::CLEAR])?;
    {
        let (sa, _g0) = e.addr(&sb);
        let (za, _g1) = e.addr(&zb);
        let (st, _g2) = e.addr_mut(&mut status);
        launch(FakeQuantParams {
            scale: sa,
            zp: za,
            status: st,
            len: len as i64,
            inner: inner as i64,
            groups: to_i32("fake-quant channels", groups)?,
            qmin: fq.qmin(),
            qmax: fq.qmax(),
            ..Default::default()
        })?;
    }
    check_status(e, &status, tensor)
}

/// `y[..len] = fake_quantize(x[..len])` with `fq`'s parameters (the bits of
/// [`FakeQuantizer::forward`]). NaN or ±inf in `x` is `Err(NonFinite)` naming `tensor` (after
/// the kernel ran: `y` is then unspecified). Waits for the executor.
pub(crate) fn fake_quantize<E: Exec>(
    e: &E,
    tensor: &str,
    fq: &FakeQuantizer,
    x: &E::Buf<f32>,
    len: usize,
    y: &mut E::Buf<f32>,
) -> Result<()> {
    let lp = launch_params(fq, len)?;
    need::<E, f32>("fake-quant input", x, len)?;
    need::<E, f32>("fake-quant output", y, len)?;
    if len == 0 {
        return Ok(());
    }
    launch_checked(e, tensor, fq, lp, len, |base| {
        let (xa, _g0) = e.addr(x);
        let (ya, _g1) = e.addr_mut(y);
        let p = FakeQuantParams {
            x: xa,
            y: ya,
            ..base
        };
        // SAFETY: x and y hold at least `len` f32 (checked above); the kernel reads scale[c] and
        // zp[c] for c = (i / inner) % groups < groups, and both arrays hold `groups` entries;
        // status holds one entry. The gradient pointers are null and unused by this entry.
        unsafe { e.launch(KernelId::FakeQuantF32, grid(len), &p) }
    })
}

/// The local partials of the forward at `x[..len]` (the bits of
/// `reference::fake_quantize_grad`): `dx = ∂y/∂x`, `dscale = ∂y/∂scale`, `dzp = ∂y/∂zp`, not
/// multiplied by an upstream gradient and not reduced. NaN or ±inf in `x` is `Err(NonFinite)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fake_quantize_grad<E: Exec>(
    e: &E,
    tensor: &str,
    fq: &FakeQuantizer,
    x: &E::Buf<f32>,
    len: usize,
    dx: &mut E::Buf<f32>,
    dscale: &mut E::Buf<f32>,
    dzp: &mut E::Buf<f32>,
) -> Result<()> {
    let lp = launch_params(fq, len)?;
    need::<E, f32>("fake-quant input", x, len)?;
    need::<E, f32>("fake-quant dx", dx, len)?;
    need::<E, f32>("fake-quant dscale", dscale, len)?;
    need::<E, f32>("fake-quant dzp", dzp, len)?;
    if len == 0 {
        return Ok(());
    }
    launch_checked(e, tensor, fq, lp, len, |base| {
        let (xa, _g0) = e.addr(x);
        let (dxa, _g1) = e.addr_mut(dx);
        let (dsa, _g2) = e.addr_mut(dscale);
        let (dza, _g3) = e.addr_mut(dzp);
        let p = FakeQuantParams {
            x: xa,
            dx: dxa,
            dscale: dsa,
            dzp: dza,
            ..base
        };
        // SAFETY: x, dx, dscale and dzp hold at least `len` f32 (checked above); scale and zp
        // hold `groups` entries and every channel index is < groups; status holds one entry.
        // `y` is null and unused by this entry.
        unsafe { e.launch(KernelId::FakeQuantGradF32, grid(len), &p) }
    })
}

#[cfg(feature = "cuda")]
mod device {
    use std::sync::Arc;

    use cudarc::driver::{CudaSlice, CudaStream};

    use super::super::CudaDevice;
    use crate::error::Result;
    use crate::qat::FakeQuantizer;

    impl FakeQuantizer {
        /// [`FakeQuantizer::forward`] on a GPU, for device buffers on `stream`: `y[..x.len()]`
        /// gets the same bits as the CPU forward. NaN or ±inf in `x` is `Err(NonFinite)` naming
        /// `tensor`.
        pub fn forward_cuda(
            &self,
            dev: &CudaDevice,
            stream: &Arc<CudaStream>,
            tensor: &str,
            x: &CudaSlice<f32>,
            y: &mut CudaSlice<f32>,
        ) -> Result<()> {
            let e = dev.exec(stream)?;
            let (xl, mut yl) = (e.lend(x), e.lend_mut(y));
            super::fake_quantize(&e, tensor, self, &*xl, x.len(), &mut *yl)
        }

        /// [`FakeQuantizer::forward`] on a GPU from and to host memory (the device's default
        /// stream).
        pub fn forward_cuda_host(
            &self,
            dev: &CudaDevice,
            tensor: &str,
            x: &[f32],
        ) -> Result<Vec<f32>> {
            use super::super::exec::Exec;
            let e = dev.exec(&dev.default_stream())?;
            let xb = e.upload(x)?;
            let mut yb = e.alloc::<f32>(x.len())?;
            super::fake_quantize(&e, tensor, self, &xb, x.len(), &mut yb)?;
            let mut y = vec![0f32; x.len()];
            e.read(&yb, &mut y)?;
            Ok(y)
        }

        /// The local partials `(∂y/∂x, ∂y/∂scale, ∂y/∂zp)` of every element of `x` on a GPU
        /// (host memory in and out), the bits of `reference::fake_quantize_grad`.
        pub fn grad_cuda_host(
            &self,
            dev: &CudaDevice,
            tensor: &str,
            x: &[f32],
        ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
            use super::super::exec::Exec;
            let e = dev.exec(&dev.default_stream())?;
            let xb = e.upload(x)?;
            let n = x.len();
            let (mut a, mut b, mut c) =
                (e.alloc::<f32>(n)?, e.alloc::<f32>(n)?, e.alloc::<f32>(n)?);
            super::fake_quantize_grad(&e, tensor, self, &xb, n, &mut a, &mut b, &mut c)?;
            let (mut dx, mut ds, mut dz) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
            e.read(&a, &mut dx)?;
            e.read(&b, &mut ds)?;
            e.read(&c, &mut dz)?;
            Ok((dx, ds, dz))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fake-quant kernels in the host simulation against the reference and the CPU loops.

    use super::super::exec::Exec;
    use super::super::sim::SimExec;
    use super::*;
    use crate::qat::FakeQuantConfig;
    use crate::quant::Granularity;
    use crate::reference;

    /// SplitMix64.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
        fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * self.unit()
        }
        fn int(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % ((hi - lo + 1) as u64)) as i32
        }
    }

    /// `channels × inner` values per channel's parameters: exact ties `(k + ½)·s` and their
    /// neighbours, both clip edges and beyond, ±0, tiny negatives (→ −0 before the + zp),
    /// subnormals, huge values, then random ones.
    fn probes(rng: &mut Rng, fq: &FakeQuantizer, inner: usize) -> Vec<f32> {
        let mut x = Vec::new();
        for c in 0..fq.channels() {
            let (s, zp) = fq.channel_params(c);
            let mut v = vec![0.0, -0.0, -1e-30, 1e-30, 1e-40, -1e-40, 3e38, -3e38];
            for k in (fq.qmin() - zp - 2)..=(fq.qmax() - zp + 2) {
                for off in [-0.5f32, 0.0, 0.5] {
                    let t = (k as f32 + off) * s;
                    v.extend([t, t.next_up(), t.next_down()]);
                }
            }
            let span = (fq.qmax() - fq.qmin() + 4) as f32 * s;
            while v.len() < inner {
                v.push(rng.uniform(-span, span));
            }
            v.truncate(inner);
            x.extend(v);
        }
        x
    }

    fn quantizer(
        rng: &mut Rng,
        bits: u32,
        symmetric: bool,
        per_channel: bool,
        channels: usize,
    ) -> FakeQuantizer {
        let cfg = FakeQuantConfig {
            bits,
            symmetric,
            granularity: if per_channel {
                Granularity::PerChannel
            } else {
                Granularity::PerTensor
            },
            learn_scale: true,
            learn_zero_point: !symmetric,
        };
        let mut fq = FakeQuantizer::new(cfg, channels).unwrap();
        let n = fq.channels();
        let scales: Vec<f32> = (0..n).map(|_| rng.uniform(0.01, 2.0)).collect();
        let zps: Vec<i32> = (0..n)
            .map(|_| {
                if symmetric {
                    0
                } else {
                    rng.int(fq.qmin(), fq.qmax())
                }
            })
            .collect();
        fq.set_params(&scales, &zps).unwrap();
        fq
    }

    #[test]
    fn simulated_kernels_match_reference_and_cpu_bit_for_bit() {
        let e = SimExec::new();
        let mut rng = Rng(77);
        let mut checked = 0usize;
        for bits in 2..=8 {
            for symmetric in [true, false] {
                for per_channel in [false, true] {
                    let channels = 3;
                    let fq = quantizer(&mut rng, bits, symmetric, per_channel, channels);
                    // 3 channels of 613 values: several blocks, a partial last block.
                    let x = probes(&mut rng, &fq, 613);
                    let len = x.len();
                    let inner = len / fq.channels();
                    let xb = e.upload(&x).unwrap();
                    let mut yb = e.upload(&vec![f32::NAN; len]).unwrap();
                    fake_quantize(&e, "x", &fq, &xb, len, &mut yb).unwrap();
                    let mut y = vec![0f32; len];
                    e.read(&yb, &mut y).unwrap();
                    let mut cpu = vec![f32::NAN; len];
                    fq.forward("x", &x, &mut cpu).unwrap();

                    let mut bufs: Vec<_> = (0..3)
                        .map(|_| e.upload(&vec![f32::NAN; len]).unwrap())
                        .collect();
                    let (a, rest) = bufs.split_at_mut(1);
                    let (b, c) = rest.split_at_mut(1);
                    fake_quantize_grad(&e, "x", &fq, &xb, len, &mut a[0], &mut b[0], &mut c[0])
                        .unwrap();
                    let (mut dx, mut ds, mut dz) =
                        (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
                    e.read(&a[0], &mut dx).unwrap();
                    e.read(&b[0], &mut ds).unwrap();
                    e.read(&c[0], &mut dz).unwrap();

                    for i in 0..len {
                        let ch = if fq.channels() == 1 { 0 } else { i / inner };
                        let (s, zp) = fq.channel_params(ch);
                        let want = reference::fake_quantize(x[i], s, zp, fq.qmin(), fq.qmax());
                        let ctx = format!(
                            "{bits}-bit sym={symmetric} per_channel={per_channel} x[{i}] = {:e} (s {s}, zp {zp})",
                            x[i]
                        );
                        assert_eq!(
                            y[i].to_bits(),
                            want.to_bits(),
                            "forward {ctx}: kernel {} reference {want}",
                            y[i]
                        );
                        assert_eq!(cpu[i].to_bits(), want.to_bits(), "cpu forward {ctx}");
                        let g = reference::fake_quantize_grad(x[i], s, zp, fq.qmin(), fq.qmax());
                        assert_eq!(dx[i].to_bits(), g.dx.to_bits(), "dx {ctx}");
                        assert_eq!(ds[i].to_bits(), g.dscale.to_bits(), "dscale {ctx}");
                        assert_eq!(dz[i].to_bits(), g.dzero_point.to_bits(), "dzp {ctx}");
                        checked += 1;
                    }
                }
            }
        }
        // Per tensor: one probe list of 613; per channel: three.
        assert_eq!(checked, 7 * 2 * (613 + 3 * 613));
    }

    #[test]
    fn simulated_kernels_refuse_what_the_cpu_refuses() {
        let e = SimExec::new();
        let mut rng = Rng(5);
        let fq = quantizer(&mut rng, 4, false, true, 2);
        // Non-finite inputs: counted by the kernel, reported by name with the first index.
        let x = [0.5f32, f32::NAN, 1.0, 2.0, f32::NEG_INFINITY, 0.0];
        let xb = e.upload(&x).unwrap();
        let mut yb = e.alloc::<f32>(6).unwrap();
        match fake_quantize(&e, "fc1.input", &fq, &xb, 6, &mut yb) {
            Err(Error::NonFinite {
                tensor,
                count,
                first_index,
            }) => assert_eq!((tensor.as_str(), count, first_index), ("fc1.input", 2, 1)),
            other => panic!("expected NonFinite, got {other:?}"),
        }
        // 5 elements do not split into 2 channels; a short output buffer; a bad scale.
        assert!(matches!(
            fake_quantize(&e, "x", &fq, &xb, 5, &mut yb),
            Err(Error::Dimension { .. })
        ));
        let mut short = e.alloc::<f32>(4).unwrap();
        assert!(matches!(
            fake_quantize(&e, "x", &fq, &xb, 6, &mut short),
            Err(Error::Shape { .. })
        ));
        let mut bad = fq.clone();
        bad.scale.value[1] = 0.0;
        assert!(matches!(
            fake_quantize(&e, "x", &bad, &xb, 6, &mut yb),
            Err(Error::InvalidParam { .. })
        ));
        // An empty tensor launches nothing and succeeds.
        let empty = e.alloc::<f32>(0).unwrap();
        let mut out = e.alloc::<f32>(0).unwrap();
        fake_quantize(&e, "x", &fq, &empty, 0, &mut out).unwrap();
    }
}
