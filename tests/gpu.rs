//! tests/gpu.rs — the CUDA backend on a real GPU, bit for bit against `reference.rs` and the CPU
//! layer: the raw GEMM (`CudaWeights`) over a shape table on both kernel families (dp4a and, on
//! sm_80+, the tensor cores: every block tile, split-K factors, the dispatch table's choice),
//! `CudaQuantLinear` for every activation mode and output type on host and device buffers and a
//! caller's stream (reporting the path that ran), every kernel-image path (CUBIN, PTX, run-time
//! NVRTC), the tensor-core kernels' sm_75 build (run here as compute_75 PTX), the quantize
//! kernels, non-finite inputs, and a layer shared by threads. Without a GPU every test returns early, unless
//! `INT8RT_REQUIRE_CUDA=1`, which turns "no GPU" into a failure.

#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use common::Rng;
use half::{bf16, f16};
use int8rt::cuda::cudarc::driver::CudaSlice;
use int8rt::cuda::{
    Axis, CudaActScales, CudaActivations, CudaDevice, CudaOut, CudaQuantized, CudaWeights,
    GemmKernel, GemmTuning, GemvVariant, KernelImage, KernelSource, MmaConfig, MmaTile,
    TuneOptions,
};
use int8rt::gemm::{
    ActScales, Activations, Bias, Context, GemmArgs, OutBuf, OutKind, OutQuant, Path,
};
use int8rt::nn::{ActivationQuant, LinearConfig, QuantLinear};
use int8rt::quant::{Convention, Granularity, QuantParams, Scheme, TorchDtype};
use int8rt::reference;

/// Device 0, or `None` (skip) — a failure under `INT8RT_REQUIRE_CUDA=1`.
fn gpu() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("INT8RT_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("INT8RT_REQUIRE_CUDA=1 but no usable GPU: {e}");
            }
            eprintln!("no GPU, GPU test skipped: {e}");
            None
        }
    }
}

#[path = "common/outputs.rs"]
mod outputs;
use outputs::{out_kinds, HostOut};

#[path = "common/layer_cases.rs"]
mod layer_cases;

impl HostOut {
    /// Run `f` on a device copy of this buffer, then copy the result back.
    fn on_device(
        &mut self,
        dev: &CudaDevice,
        f: impl FnOnce(CudaOut<'_>) -> int8rt::Result<Path>,
    ) -> int8rt::Result<Path> {
        let s = dev.default_stream();
        macro_rules! go {
            ($v:expr, $wrap:expr) => {{
                let mut d = s.clone_htod($v.as_slice()).unwrap();
                let p = f($wrap(&mut d))?;
                s.memcpy_dtoh(&d, $v.as_mut_slice()).unwrap();
                s.synchronize().unwrap();
                Ok(p)
            }};
        }
        match self {
            HostOut::I32(v) => go!(v, CudaOut::I32),
            HostOut::F32(v) => go!(v, CudaOut::F32),
            HostOut::F16(v) => go!(v, CudaOut::F16),
            HostOut::Bf16(v) => go!(v, CudaOut::Bf16),
            HostOut::I8(v, q) => {
                let q = *q;
                go!(v, |d| CudaOut::I8(d, q))
            }
        }
    }
}

fn assert_same(got: &HostOut, want: &HostOut, n: usize, what: &str) {
    let (g, w) = (got.bits(), want.bits());
    if let Some((i, (a, b))) = g.iter().zip(&w).enumerate().find(|(_, (a, b))| a != b) {
        panic!(
            "{what}: first mismatch at row {} col {}: GPU {a:#x}, reference {b:#x}",
            i / n.max(1),
            i % n.max(1)
        );
    }
}

/// Whether `Auto` runs the tensor-core kernels on this GPU (sm_80 and newer; sm_75 runs them
/// forced only).
fn has_mma(dev: &CudaDevice) -> bool {
    dev.compute_capability().0 >= 8
}

/// The GPU's compute capability as major · 10 + minor.
fn arch(dev: &CudaDevice) -> u32 {
    let (major, minor) = dev.compute_capability();
    (major * 10 + minor) as u32
}

/// The path a GEMM on `kernel` must report on `dev` (16-byte-aligned rows): Auto takes the
/// tensor cores on sm_80+ (the weight-streaming GEMV up to 64 rows, tiles above), dp4a before.
fn want_path(dev: &CudaDevice, kernel: GemmKernel) -> Path {
    match kernel {
        GemmKernel::Dp4a | GemmKernel::Dp4aGemv16 | GemmKernel::Dp4aWarpPerRow => Path::CudaDp4a,
        GemmKernel::Mma(_) | GemmKernel::MmaGemv | GemmKernel::MmaGemvVariant(_) => Path::CudaMma,
        GemmKernel::Auto if has_mma(dev) => Path::CudaMma,
        GemmKernel::Auto => Path::CudaDp4a,
    }
}

/// Rows of `k` bytes at stride `ld` (zero padding).
fn padded<T: Copy + Default>(v: &[T], rows: usize, k: usize, ld: usize) -> Vec<T> {
    let mut out = vec![T::default(); (rows * ld).max(1)];
    for r in 0..rows {
        out[r * ld..r * ld + k].copy_from_slice(&v[r * k..(r + 1) * k]);
    }
    out
}

/// The raw GEMM vs `reference::gemm` for one shape, s8 and u8, per tensor and per row, every
/// output kind, on the kernel family `kernel` (activation rows packed at stride k for dp4a, so
/// its unaligned kernels run too; padded to 16 bytes otherwise, as the tensor cores need).
fn check_gemm(dev: &CudaDevice, rng: &mut Rng, m: usize, n: usize, k: usize, kernel: GemmKernel) {
    let s = dev.default_stream();
    let w = rng.i8s(n * k, -127, 127);
    let w_scales: Vec<f32> = (0..n).map(|_| 0.001 + rng.unit() * 0.02).collect();
    let bias_i: Vec<i32> = (0..n).map(|_| rng.int(-100_000, 100_000)).collect();
    let xs8 = rng.i8s(m * k, -128, 127);
    let xu8 = rng.u8s(m * k, 0, 255);
    let row_scales: Vec<f32> = (0..m).map(|_| 0.002 + rng.unit() * 0.05).collect();
    let row_zps: Vec<i32> = (0..m).map(|_| rng.int(0, 255)).collect();
    let mut cw = CudaWeights::new(dev, &w, n, k, &w_scales, Bias::I32(&bias_i)).unwrap();
    cw.set_kernel(kernel).unwrap();
    let lda = if kernel == GemmKernel::Dp4a {
        k
    } else {
        k.next_multiple_of(16)
    };
    let xs8_d = s.clone_htod(&padded(&xs8, m, k, lda)).unwrap();
    let xu8_d = s.clone_htod(&padded(&xu8, m, k, lda)).unwrap();
    let rs_d = s.clone_htod(&row_scales).unwrap();
    let rz_d = s.clone_htod(&row_zps).unwrap();
    let ts_d = s.clone_htod(&[0.0123f32]).unwrap();
    let tz_d = s.clone_htod(&[77i32]).unwrap();
    for case in 0..4 {
        let (x_ref, act_ref) = match case {
            0 => (
                Activations::S8(&xs8),
                ActScales::PerTensor {
                    scale: 0.0123,
                    zero_point: 0,
                },
            ),
            1 => (
                Activations::U8(&xu8),
                ActScales::PerTensor {
                    scale: 0.0123,
                    zero_point: 77,
                },
            ),
            2 => (
                Activations::S8(&xs8),
                ActScales::PerRow {
                    scales: &row_scales,
                    zero_points: None,
                },
            ),
            _ => (
                Activations::U8(&xu8),
                ActScales::PerRow {
                    scales: &row_scales,
                    zero_points: Some(&row_zps),
                },
            ),
        };
        let args = GemmArgs {
            m,
            n,
            k,
            x: x_ref,
            act: act_ref,
            w: &w,
            w_scales: &w_scales,
            bias: Bias::I32(&bias_i),
        };
        for kind in out_kinds() {
            let mut want = HostOut::new(kind, m * n);
            reference::gemm(&args, &mut want.as_buf()).unwrap();
            let mut got = HostOut::new(kind, m * n);
            let path = got
                .on_device(dev, |o| {
                    let x = match case {
                        0 | 2 => CudaActivations::S8 { x: &xs8_d, lda },
                        _ => CudaActivations::U8 { x: &xu8_d, lda },
                    };
                    let a = match case {
                        0 => CudaActScales::PerTensor {
                            scale: &ts_d,
                            zero_point: None,
                        },
                        1 => CudaActScales::PerTensor {
                            scale: &ts_d,
                            zero_point: Some(&tz_d),
                        },
                        2 => CudaActScales::PerRow {
                            scales: &rs_d,
                            zero_points: None,
                        },
                        _ => CudaActScales::PerRow {
                            scales: &rs_d,
                            zero_points: Some(&rz_d),
                        },
                    };
                    cw.gemm(&s, m, x, a, o)
                })
                .unwrap();
            let what = format!("gemm {kernel:?} m={m} n={n} k={k} case {case} {kind:?}");
            assert_eq!(path, want_path(dev, kernel), "{what}");
            assert_same(&got, &want, n, &what);
        }
    }
}

#[test]
fn gemm_matches_reference_over_shapes() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(11);
    // Every family: dp4a forced, the default (on sm_80+ the weight-streaming tensor-core GEMV
    // for few rows, the dispatch table's tile and split above), and the tensor-core GEMV forced
    // (any M: 8-, 16- and 32-row block rows, several of them past 32) and its block variants.
    // Every size 1..=17 in one dimension with the others odd, tile edges ± 1, GEMV and deep
    // shapes.
    // (dp4a: up to 8 rows the 16-row GEMV on aligned rows, the warp-per-row one forced; the
    // unaligned cases below run the latter under `Dp4a` too)
    let mut kernels = vec![
        GemmKernel::Dp4a,
        GemmKernel::Auto,
        GemmKernel::Dp4aGemv16,
        GemmKernel::Dp4aWarpPerRow,
    ];
    if has_mma(&dev) {
        kernels.push(GemmKernel::MmaGemv);
        kernels.push(GemmKernel::MmaGemvVariant(GemvVariant::Narrow));
        kernels.push(GemmKernel::MmaGemvVariant(GemvVariant::Wide));
    }
    if dev.compute_capability().0 >= 9 {
        // (the bulk-copy GEMV; the prefetching GEMV: its first native run)
        kernels.push(GemmKernel::MmaGemvVariant(GemvVariant::Bulk));
        kernels.push(GemmKernel::MmaGemvVariant(GemvVariant::Prefetch));
    }
    for kernel in kernels {
        for d in 1..=17 {
            check_gemm(&dev, &mut rng, d, 13, 29, kernel);
            check_gemm(&dev, &mut rng, 9, d, 31, kernel);
            check_gemm(&dev, &mut rng, 10, 7, d, kernel);
        }
        for &(m, n, k) in &[
            (1, 4096, 4096),
            (8, 257, 1000),
            (32, 1000, 4096),
            (127, 129, 95),
            (128, 128, 128),
            (129, 255, 257),
            (300, 70, 4099),
            (1, 3, 66000),
        ] {
            check_gemm(&dev, &mut rng, m, n, k, kernel);
        }
        // One row on a layer with more 16-row blocks than three per SM: dp4a's narrow 16-row
        // GEMV block (`Dp4a` on aligned rows — K a multiple of 16, as `check_gemm` packs dp4a's
        // rows at K bytes, and 16 past a 64-byte step; `dp4a_narrow`).
        let wide = 48 * dev.sm_count() as usize + 17;
        check_gemm(&dev, &mut rng, 1, wide, 784, kernel);
    }
}

/// Forcing `kernel` on `dev` is refused with `PathUnavailable` naming the tensor-core path
/// (the error, for the log).
fn refused(dev: &CudaDevice, kernel: GemmKernel) -> int8rt::Error {
    let mut cw = CudaWeights::new(dev, &[1; 16], 1, 16, &[1.0], Bias::None).unwrap();
    let e = cw.set_kernel(kernel).unwrap_err();
    assert!(
        matches!(
            e,
            int8rt::Error::PathUnavailable {
                path: Path::CudaMma,
                ..
            }
        ),
        "{e}"
    );
    e
}

#[test]
fn tma_boxes_land_as_the_simulation_assumes() {
    // The TMA's box copy on the hardware (sm_90) against the layout the simulation emulates and
    // the TMA tiles are written for (int8rt::cuda::tma_box_expected: the 128-byte swizzle, zeros
    // outside the tensor, the whole box counted on the mbarrier — a short count would hang, and
    // the kernel's bounded wait traps instead). A mismatch names the box, row and chunk.
    let Some(dev) = gpu() else { return };
    if dev.compute_capability() != (9, 0) {
        eprintln!("{dev:?}: no sm_90a TMA kernels to probe");
        return;
    }
    let s = dev.default_stream();
    let (rows, cols, ld) = int8rt::cuda::TMA_PROBE_MATRIX;
    let src = int8rt::cuda::tma_probe_source();
    for &(box_rows, c0, c1) in &int8rt::cuda::TMA_PROBE_BOXES {
        let got =
            int8rt::cuda::tma_box_on_gpu(&dev, &s, &src, (rows, cols, ld), box_rows, (c0, c1))
                .unwrap_or_else(|e| panic!("box {box_rows} at ({c0}, {c1}): {e}"));
        let want = int8rt::cuda::tma_box_expected(
            &src,
            (rows, cols, ld),
            box_rows,
            (c0 as i64, c1 as i64),
        );
        if let Some(o) = (0..want.len()).find(|&o| got[o] != want[o]) {
            panic!(
                "box {box_rows} at ({c0}, {c1}): byte {o} (row {}, chunk {}, byte {}) is {} on the GPU, {} expected;                  first row as landed: {:?}",
                o / 128,
                o % 128 / 16,
                o % 16,
                got[o],
                want[o],
                &got[..128]
            );
        }
    }
}

#[test]
fn mma_every_tile_and_split_matches_reference() {
    let Some(dev) = gpu() else { return };
    if arch(&dev) < 75 {
        // Forcing them is an error naming the path, not a failed launch.
        refused(&dev, GemmKernel::Mma(None));
        eprintln!("{dev:?} predates sm_75: no tensor-core kernels to test");
        return;
    }
    let mut rng = Rng::new(17);
    for tile in MmaTile::ALL {
        let (bm, bn) = (tile.bm(), tile.bn());
        if !tile.runs_on(arch(&dev)) {
            // The wgmma tiles (sm_90a CUBIN) run on sm_90 alone, sm_75 holds 64 KiB of shared
            // memory per block: elsewhere forcing one is an error naming the path.
            let e = refused(&dev, GemmKernel::Mma(Some(MmaConfig { tile, splits: 1 })));
            eprintln!("{tile:?} skipped: {e}");
            continue;
        }
        for splits in [1, 3] {
            let kernel = GemmKernel::Mma(Some(MmaConfig { tile, splits }));
            for &(m, n, k) in &[
                (bm, bn, 64),
                (bm + 1, bn - 1, 65),
                (bm - 1, bn + 1, 1000),
                (2 * bm + 3, 3 * bn + 5, 700),
                // (a decode-sized M over more k tiles than the pipeline holds: every stage
                // refilled, the TMA tiles' rings twice)
                (5, 2 * bn + 3, 128 * (2 * tile.stages() + 1) + 40),
            ] {
                check_gemm(&dev, &mut rng, m, n, k, kernel);
            }
        }
    }
}

#[test]
fn sm75_build_of_the_tensor_core_kernels_matches_reference() {
    // The tensor-core kernels' sm_75 build (no cp.async: synchronous copies; no m16n8k32: four
    // m8n8k16 each; kernels/common.cuh) has no Turing card to run on. Here it runs natively on
    // this GPU instead: NVRTC compiles the modules as compute_75 PTX at run time and the driver
    // JIT-compiles that code (KernelSource::NvrtcPtx) — every mma.sync and weight-streaming
    // tile that fits sm_75's shared memory at split-K 1 and 3, the GEMV and its block variants,
    // against the reference.
    let Some(plain) = gpu() else { return };
    if arch(&plain) < 75 {
        eprintln!("{plain:?} predates sm_75: no sm_75 build to run");
        return;
    }
    let dev = CudaDevice::with_source(0, KernelSource::NvrtcPtx(75)).unwrap();
    match dev.module_image(int8rt::cuda::registry::Module::GemmMma) {
        Ok(img) => assert_eq!(img, KernelImage::NvrtcPtx(75)),
        Err(int8rt::Error::CudaUnavailable(e)) => {
            // (no libnvrtc on this machine: nothing to compile the PTX with)
            eprintln!("sm_75 build not checked: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let mut rng = Rng::new(75);
    let mut kernels = vec![
        GemmKernel::MmaGemv,
        GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
        GemmKernel::MmaGemvVariant(GemvVariant::Wide),
    ];
    for tile in MmaTile::ALL {
        if tile.runs_on(75) {
            for splits in [1, 3] {
                kernels.push(GemmKernel::Mma(Some(MmaConfig { tile, splits })));
            }
        }
    }
    for kernel in kernels {
        let (bm, bn, stages) = match kernel {
            GemmKernel::Mma(Some(c)) => (c.tile.bm(), c.tile.bn(), c.tile.stages()),
            _ => (8, 16, 2),
        };
        for &(m, n, k) in &[
            (bm + 1, bn - 1, 65),
            (2 * bm + 3, 3 * bn + 5, 700),
            (5, 2 * bn + 3, 64 * (2 * stages + 1) + 40),
        ] {
            check_gemm(&dev, &mut rng, m, n, k, kernel);
        }
    }
    assert_eq!(
        dev.module_image(int8rt::cuda::registry::Module::GemvMma)
            .unwrap(),
        KernelImage::NvrtcPtx(75)
    );
}

fn act_modes() -> Vec<ActivationQuant> {
    let stat = |c: Convention, lo: f32, hi: f32| {
        ActivationQuant::Static(QuantParams::from_range(c, lo, hi).unwrap())
    };
    let mut v = Vec::new();
    for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
        for granularity in [Granularity::PerRow, Granularity::PerTensor] {
            v.push(ActivationQuant::Dynamic {
                scheme,
                granularity,
            });
        }
    }
    v.push(stat(Convention::Int8rt, -2.5, 2.5));
    v.push(ActivationQuant::Static(
        QuantParams::asymmetric(-1.0, 3.0).unwrap(),
    ));
    v.push(stat(Convention::CompressedTensors, -2.0, 2.0));
    v.push(stat(
        Convention::TorchAo {
            dtype: TorchDtype::QUInt8,
            symmetric: false,
            reduce_range: false,
        },
        -1.5,
        2.5,
    ));
    v.push(stat(
        Convention::PytorchQuantization {
            narrow_range: true,
            unsigned: false,
        },
        -3.0,
        3.0,
    ));
    v
}

#[test]
fn layer_matches_cpu_layer_host_and_device_buffers() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(12);
    let ctx = Context::new().with_path(Path::Reference);
    let stream = dev.new_stream().unwrap();
    for (i, act) in act_modes().into_iter().enumerate() {
        for &(m, k, n) in &[(1, 4096, 64), (5, 333, 17), (77, 1024, 200)] {
            // The default kernel family, and dp4a forced every other time.
            let kernel = if (i + m) % 2 == 0 {
                GemmKernel::Auto
            } else {
                GemmKernel::Dp4a
            };
            let w = rng.f32s(n * k, 0.5);
            let bias = rng.f32s(n, 1.0);
            let cfg = LinearConfig {
                activations: act,
                ..Default::default()
            };
            let layer =
                QuantLinear::from_f32("fc", &w, n, k, (i % 2 == 0).then_some(&bias[..]), cfg)
                    .unwrap();
            let gl = layer.to_cuda(&dev).unwrap().with_kernel(kernel).unwrap();
            let x = rng.f32s(m * k, 1.0);
            let xd: CudaSlice<f32> = stream.clone_htod(&x).unwrap();
            for kind in out_kinds() {
                let mut want = HostOut::new(kind, m * n);
                let cpu = layer.forward(&ctx, &x, m, &mut want.as_buf());
                let mut got = HostOut::new(kind, m * n);
                let host = gl.forward_on(&stream, &x, m, &mut got.as_buf());
                let mut got_d = HostOut::new(kind, m * n);
                let devr = got_d.on_device(&dev, |o| gl.forward_device(&stream, &xd, m, o));
                match (cpu, host, devr) {
                    (Ok(_), Ok(p1), Ok(p2)) => {
                        let path = want_path(&dev, kernel);
                        assert_eq!((p1, p2), (path, path), "{kernel:?}");
                        let what = format!("layer {act:?} m={m} k={k} n={n} {kind:?}");
                        assert_same(&got, &want, n, &what);
                        assert_same(&got_d, &want, n, &format!("{what} (device buffers)"));
                    }
                    (Err(a), Err(b), Err(c)) => {
                        assert_eq!(a.to_string(), b.to_string());
                        assert_eq!(a.to_string(), c.to_string());
                    }
                    (a, b, c) => panic!("CPU and GPU disagree on success: {a:?} / {b:?} / {c:?}"),
                }
            }
        }
    }
}

#[test]
fn every_kernel_image_path_gives_the_same_bits() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(13);
    let (m, k, n) = (33, 100, 21);
    let w = rng.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
    let x = rng.f32s(m * k, 1.0);
    let mut want = vec![0f32; m * n];
    layer
        .forward(
            &Context::new().with_path(Path::Reference),
            &x,
            m,
            &mut OutBuf::F32(&mut want),
        )
        .unwrap();
    let mut ran = Vec::new();
    for src in [KernelSource::Cubin, KernelSource::Ptx, KernelSource::Nvrtc] {
        let d = CudaDevice::with_source(0, src).unwrap();
        let gl = match layer.to_cuda(&d) {
            Ok(l) => l,
            Err(e) => panic!("{src:?}: {e}"),
        };
        let mut y = vec![f32::NAN; m * n];
        match gl.forward(&x, m, &mut OutBuf::F32(&mut y)) {
            Ok(_) => {
                // The GEMM module that ran (the tensor cores on sm_80+).
                let module = if has_mma(&d) {
                    int8rt::cuda::registry::Module::GemmMma
                } else {
                    int8rt::cuda::registry::Module::GemmDp4a
                };
                let img = d.module_image(module).unwrap();
                ran.push(img);
                assert_eq!(
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{src:?}"
                );
            }
            // A build without NVRTC has no CUBIN/PTX; a machine without libnvrtc cannot compile.
            Err(e) => eprintln!("kernel source {src:?} unavailable here: {e}"),
        }
    }
    eprintln!("kernel images exercised: {ran:?}");
    assert!(!ran.is_empty(), "no kernel image could be loaded");
    // The build-time CUBIN loads wherever the build made one for the layer's modules: the
    // CUBIN of this GPU's major architecture at or below its minor one (none on sm_100+, none
    // of the quantizer or the dp4a GEMM before sm_80 — the simulated sm_75 driver showed the
    // check failing there when it asked for a CUBIN regardless).
    use int8rt::cuda::registry::{Module, BUILT_WITH_NVRTC, CUBIN_ARCHS};
    let cc = arch(&dev);
    let gemm = if has_mma(&dev) {
        Module::GemmMma
    } else {
        Module::GemmDp4a
    };
    let built = CUBIN_ARCHS
        .iter()
        .rev()
        .find(|&&a| a / 10 == cc / 10 && a <= cc)
        .is_some_and(|&a| [Module::Quant, gemm].iter().all(|m| m.cubin(a).is_some()));
    if BUILT_WITH_NVRTC && built {
        assert!(
            ran.contains(&KernelImage::Cubin),
            "the build-time CUBIN did not load"
        );
    }
}

#[test]
fn non_finite_input_is_an_error_and_leaves_output_unwritten() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(14);
    let (m, k, n) = (4, 64, 8);
    for act in act_modes() {
        let w = rng.f32s(n * k, 0.5);
        let layer = QuantLinear::from_f32(
            "proj",
            &w,
            n,
            k,
            None,
            LinearConfig {
                activations: act,
                ..Default::default()
            },
        )
        .unwrap();
        let gl = layer.to_cuda(&dev).unwrap();
        let mut x = rng.f32s(m * k, 1.0);
        x[70] = f32::NAN;
        x[200] = f32::INFINITY;
        let mut y = vec![7.5f32; m * n];
        let e = gl.forward(&x, m, &mut OutBuf::F32(&mut y)).unwrap_err();
        let mut yc = vec![0f32; m * n];
        let c = layer
            .forward(&Context::new(), &x, m, &mut OutBuf::F32(&mut yc))
            .unwrap_err();
        assert_eq!(e.to_string(), c.to_string());
        assert!(y.iter().all(|&v| v == 7.5));
        // Then clean forwards on the same layer and stream (the slot of the stream's report
        // ring that saw the NaN is written clear again, and the next forwards reuse it): the
        // CPU's bits each time.
        x[70] = 0.5;
        x[200] = -0.25;
        layer
            .forward(&Context::new(), &x, m, &mut OutBuf::F32(&mut yc))
            .unwrap();
        for _ in 0..3 {
            let mut y = vec![7.5f32; m * n];
            gl.forward(&x, m, &mut OutBuf::F32(&mut y)).unwrap();
            assert!(
                y.iter().zip(&yc).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{act:?}: a clean forward after a refused one"
            );
        }
    }
}

#[test]
fn device_layers_answer_arbitrary_calls_as_the_cpu_reference() {
    // tests/api_props.rs's layer property on the device: arbitrary, often wrong, calls (lengths
    // off by one or zero, n, k or m = 0, every activation mode, bias or none, four output kinds,
    // NaN / -inf inputs). Building, uploading and running the layer must give the reference
    // path's bits or an error of the same kind, and never panic.
    use layer_cases::{layer_answer, layer_case};
    use proptest::test_runner::{Config, TestRunner};
    let Some(dev) = gpu() else { return };
    let reference = Context::new().with_path(Path::Reference);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let r = runner.run(&layer_case(), |c| {
        let want = layer_answer(&c, &|l, x, m, y| l.forward(&reference, x, m, y).map(|_| ()));
        let got = layer_answer(&c, &|l, x, m, y| {
            l.to_cuda(&dev)?.forward(x, m, y).map(|_| ())
        });
        proptest::prop_assert_eq!(got, want);
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn deferred_forwards_pipeline_a_chain_and_report_at_wait() {
    // Two layers chained on one stream through `forward_device_async`, waited at the end: the
    // CPU layers' bits; then a NaN input: the first wait names the first layer, its output is
    // left unwritten, and the call enqueued behind it on the stream is still exact.
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(16);
    let (m, k, h, n) = (3, 96, 40, 24);
    let mut layer = |name: &str, out: usize, inp: usize| {
        let w = rng.f32s(out * inp, 0.5);
        QuantLinear::from_f32(name, &w, out, inp, None, LinearConfig::default()).unwrap()
    };
    let (l1, l2) = (layer("fc1", h, k), layer("fc2", n, h));
    let (g1, g2) = (l1.to_cuda(&dev).unwrap(), l2.to_cuda(&dev).unwrap());
    let s = dev.new_stream().unwrap();
    let x = rng.f32s(m * k, 1.0);
    let xd = s.clone_htod(&x).unwrap();
    let mut hd = s.alloc_zeros::<f32>(m * h).unwrap();
    let mut yd = s.alloc_zeros::<f32>(m * n).unwrap();
    let p1 = g1
        .forward_device_async(&s, &xd, m, CudaOut::F32(&mut hd))
        .unwrap();
    let p2 = g2
        .forward_device_async(&s, &hd, m, CudaOut::F32(&mut yd))
        .unwrap();
    assert_eq!(p2.wait().unwrap(), want_path(&dev, GemmKernel::Auto));
    p1.wait().unwrap();
    let ctx = Context::new();
    let mut hc = vec![0f32; m * h];
    l1.forward(&ctx, &x, m, &mut OutBuf::F32(&mut hc)).unwrap();
    let mut yc = vec![0f32; m * n];
    l2.forward(&ctx, &hc, m, &mut OutBuf::F32(&mut yc)).unwrap();
    let y = s.clone_dtoh(&yd).unwrap();
    assert_eq!(
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        yc.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    let mut bad = x.clone();
    bad[100] = f32::NAN;
    let bd = s.clone_htod(&bad).unwrap();
    let mut hb = s.clone_htod(&vec![7.5f32; m * h]).unwrap();
    let mut h2 = s.alloc_zeros::<f32>(m * h).unwrap();
    let pb = g1
        .forward_device_async(&s, &bd, m, CudaOut::F32(&mut hb))
        .unwrap();
    let pc = g1
        .forward_device_async(&s, &xd, m, CudaOut::F32(&mut h2))
        .unwrap();
    let e = pb.wait().unwrap_err();
    let c = l1
        .forward(&ctx, &bad, m, &mut OutBuf::F32(&mut hc))
        .unwrap_err();
    assert_eq!(e.to_string(), c.to_string());
    pc.wait().unwrap();
    assert!(s.clone_dtoh(&hb).unwrap().iter().all(|&v| v == 7.5));
    l1.forward(&ctx, &x, m, &mut OutBuf::F32(&mut hc)).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&s.clone_dtoh(&h2).unwrap()), bits(&hc));
}

#[test]
fn quantize_kernels_match_reference() {
    let Some(dev) = gpu() else { return };
    let s = dev.default_stream();
    let mut rng = Rng::new(15);
    let (rows, cols) = (37, 1001);
    let x = rng.f32s(rows * cols, 2.0);
    let xd = s.clone_htod(&x).unwrap();
    for axis in [Axis::Tensor, Axis::Row, Axis::Column] {
        let groups = match axis {
            Axis::Tensor => 1,
            Axis::Row => rows,
            Axis::Column => cols,
        };
        let params: Vec<QuantParams> = (0..groups)
            .map(|g| QuantParams::symmetric(1.0 + g as f32 * 0.01).unwrap())
            .collect();
        let mut q: CudaSlice<i8> = s.alloc_zeros(rows * cols).unwrap();
        dev.quantize(
            &s,
            "x",
            &xd,
            rows,
            cols,
            axis,
            &params,
            CudaQuantized::S8(&mut q),
        )
        .unwrap();
        let qh = s.clone_dtoh(&q).unwrap();
        let mut y: CudaSlice<f32> = s.alloc_zeros(rows * cols).unwrap();
        dev.dequantize(
            &s,
            CudaQuantized::S8(&mut q),
            rows,
            cols,
            axis,
            &params,
            &mut y,
        )
        .unwrap();
        let yh = s.clone_dtoh(&y).unwrap();
        for i in 0..rows * cols {
            let c = match axis {
                Axis::Tensor => 0,
                Axis::Row => i / cols,
                Axis::Column => i % cols,
            };
            assert_eq!(
                qh[i] as i32,
                reference::quantize(x[i], &params[c]),
                "{axis:?} {i}"
            );
            assert_eq!(
                yh[i].to_bits(),
                reference::dequantize(qh[i] as i32, &params[c]).to_bits()
            );
        }
    }
}

#[test]
fn quantize_kernels_take_any_values_and_parameters_as_the_host() {
    // The elementwise quantize / dequantize on arbitrary input: any shape (empty included), each
    // axis, parameters of every convention and rule (divide, multiply by the inverse, unit
    // scale) from ranges up to f32's limits, values huge, subnormal, ±0, ±inf or NaN, into s8
    // or u8 whichever the parameters fit (or not). The device gives the host's integers and
    // floats bit for bit (`reference::quantize` / `dequantize`), or refuses: NaN, parameters
    // outside the output type, or groups that differ in integer range or kind of rule (the
    // device's documented limit).
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let Some(dev) = gpu() else { return };
    let s = dev.default_stream();
    let value = prop_oneof![
        8 => -300.0f32..300.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::NAN),
        1 => Just(f32::MAX),
        1 => Just(f32::MIN_POSITIVE / 8.0),
        1 => any::<u32>().prop_map(f32::from_bits),
    ];
    let range = prop_oneof![
        4 => (-10.0f32..0.0, 0.0f32..10.0),
        1 => (Just(-f32::MAX / 4.0), Just(f32::MAX / 4.0)),
        1 => (Just(-1e-30f32), Just(1e-30f32)),
    ];
    let cases = (
        (0usize..6, 0usize..9, 0u8..3, any::<bool>(), 0u8..5),
        proptest::collection::vec((range, 0u8..8), 1..9),
        proptest::collection::vec(value, 0..54),
    );
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0usize);
    let r = runner.run(&cases, |((rows, cols, ax, unsigned, mix), sets, xs)| {
        let axis = [Axis::Tensor, Axis::Row, Axis::Column][ax as usize];
        let groups = match axis {
            Axis::Tensor => 1,
            Axis::Row => rows,
            Axis::Column => cols,
        };
        let ao = |dtype, symmetric| Convention::TorchAo {
            dtype,
            symmetric,
            reduce_range: false,
        };
        let conventions = [
            Convention::Int8rt,
            Convention::CompressedTensors,
            Convention::PytorchQuantization {
                narrow_range: true,
                unsigned: false,
            },
            ao(TorchDtype::QInt8, true),
            ao(TorchDtype::QUInt8, false),
            ao(TorchDtype::QInt8, false),
        ];
        let params: Vec<QuantParams> = (0..groups)
            .filter_map(|g| {
                // One convention for the whole tensor, or (one case in five) one per group.
                let ((lo, hi), own) = sets[g % sets.len()];
                let kind = if mix == 0 { own } else { sets[0].1 };
                match kind {
                    6 => QuantParams::asymmetric(lo, hi).ok(),
                    7 => QuantParams::symmetric(hi).ok(),
                    c => QuantParams::from_range(conventions[c as usize], lo, hi).ok(),
                }
            })
            .collect();
        let n = rows * cols;
        let x: Vec<f32> = (0..n).map(|i| xs.get(i).copied().unwrap_or(0.5)).collect();
        let xd = s
            .clone_htod(if n == 0 { &[0.0f32][..] } else { &x })
            .unwrap();
        // The host: refused on a wrong parameter count, on parameters the output type cannot
        // hold, or on NaN.
        let fits = |p: &QuantParams| {
            if unsigned {
                p.qmin() >= 0 && p.qmax() <= 255
            } else {
                p.qmin() >= -128 && p.qmax() <= 127
            }
        };
        let group = |i: usize| match axis {
            Axis::Tensor => 0,
            Axis::Row => i / cols,
            Axis::Column => i % cols,
        };
        // (the device takes one integer range and one kind of rule per tensor)
        let shared = |p: &QuantParams| {
            let r = |p: &QuantParams| (p.qmin(), p.qmax(), std::mem::discriminant(&p.rule()));
            r(p) == r(&params[0])
        };
        let host_ok = params.len() == groups
            && params.iter().all(|p| fits(p) && shared(p))
            && !x.iter().any(|v| v.is_nan());
        let want: Vec<i32> = if host_ok {
            (0..n)
                .map(|i| reference::quantize(x[i], &params[group(i)]))
                .collect()
        } else {
            Vec::new()
        };
        let len = n.max(1);
        let (mut q8, mut qu): (CudaSlice<i8>, CudaSlice<u8>) =
            (s.alloc_zeros(len).unwrap(), s.alloc_zeros(len).unwrap());
        let out = if unsigned {
            CudaQuantized::U8(&mut qu)
        } else {
            CudaQuantized::S8(&mut q8)
        };
        let got = dev.quantize(&s, "x", &xd, rows, cols, axis, &params, out);
        prop_assert_eq!(got.is_ok(), host_ok, "device {:?}", got);
        if !host_ok {
            return Ok(());
        }
        let q: Vec<i32> = if unsigned {
            s.clone_dtoh(&qu).unwrap()[..n]
                .iter()
                .map(|&v| v as i32)
                .collect()
        } else {
            s.clone_dtoh(&q8).unwrap()[..n]
                .iter()
                .map(|&v| v as i32)
                .collect()
        };
        prop_assert_eq!(&q, &want);
        accepted.set(accepted.get() + 1);
        let mut y: CudaSlice<f32> = s.alloc_zeros(len).unwrap();
        let back = if unsigned {
            CudaQuantized::U8(&mut qu)
        } else {
            CudaQuantized::S8(&mut q8)
        };
        dev.dequantize(&s, back, rows, cols, axis, &params, &mut y)
            .unwrap();
        let yh = s.clone_dtoh(&y).unwrap();
        for i in 0..n {
            let wy = reference::dequantize(want[i], &params[group(i)]);
            prop_assert_eq!(yh[i].to_bits(), wy.to_bits(), "element {}", i);
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    // Not vacuous: a good share of the cases is accepted and compared.
    assert!(
        accepted.get() >= 64,
        "only {} of 256 accepted",
        accepted.get()
    );
}

#[test]
fn one_layer_shared_by_threads_on_their_own_streams() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(16);
    let (m, k, n) = (16, 512, 96);
    let w = rng.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
    let gl = Arc::new(layer.to_cuda(&dev).unwrap());
    let x = rng.f32s(m * k, 1.0);
    let mut want = vec![0f32; m * n];
    layer
        .forward(
            &Context::new().with_path(Path::Reference),
            &x,
            m,
            &mut OutBuf::F32(&mut want),
        )
        .unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let (gl, dev, x, want) = (gl.clone(), dev.clone(), &x, &want);
            sc.spawn(move || {
                let stream = dev.new_stream().unwrap();
                for _ in 0..10 {
                    let mut y = vec![0f32; m * n];
                    gl.forward_on(&stream, x, m, &mut OutBuf::F32(&mut y))
                        .unwrap();
                    assert_eq!(&y, want);
                }
            });
        }
    });
}

#[test]
fn tuning_verifies_every_kernel_on_this_gpu_and_the_tuned_layer_keeps_the_bits() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(31);
    let stream = dev.new_stream().unwrap();
    let (n, k) = (1000, 1040);
    let w = rng.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
    let mut gl = layer.to_cuda(&dev).unwrap();
    let rows = [1, 8, 24, 100, 256];
    // Every candidate, those never run on a GPU before included: this test is their first
    // native check.
    let opts = TuneOptions {
        reps: 5,
        include_unproven: true,
        ..TuneOptions::default()
    };
    let report = gl.tune(&stream, &rows, &opts).unwrap();
    // Every candidate — every tile and split-K factor the shape allows, the GEMV variants, the
    // wgmma tiles on sm_90 — gave the default path's bits on this GPU (s8 and u8 activations).
    let rejected: Vec<_> = report.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert!(report.candidates.len() > rows.len() * 3 || !has_mma(&dev));
    let t = report.tuning.clone();
    assert_eq!(t.entries().iter().map(|e| e.m).collect::<Vec<_>>(), rows);
    for e in t.entries() {
        assert!(e.seconds > 0.0 && e.seconds <= e.auto_seconds, "{e:?}");
        eprintln!(
            "tuned {n}x{k} at {} rows: {} {:.1} µs (auto {:.1} µs)",
            e.m,
            e.kernel,
            e.seconds * 1e6,
            e.auto_seconds * 1e6
        );
    }
    assert_eq!(gl.tuning(), Some(&t));
    assert_eq!(GemmTuning::from_text(&t.to_text()).unwrap(), t);
    // The tuned layer gives the CPU layer's bits at and between the tuned row counts.
    let ctx = Context::new().with_path(Path::Reference);
    for m in [1, 5, 24, 77, 300] {
        let x = rng.f32s(m * k, 1.0);
        let mut want = vec![0f32; m * n];
        layer
            .forward(&ctx, &x, m, &mut OutBuf::F32(&mut want))
            .unwrap();
        let mut got = vec![0f32; m * n];
        gl.forward_on(&stream, &x, m, &mut OutBuf::F32(&mut got))
            .unwrap();
        assert!(
            want.iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "m={m}"
        );
    }
    // Another shape refuses it; the same shape takes it.
    let other = QuantLinear::from_f32(
        "g",
        &w[..k * (n - 1)],
        n - 1,
        k,
        None,
        LinearConfig::default(),
    )
    .unwrap();
    let mut go = other.to_cuda(&dev).unwrap();
    assert!(matches!(
        go.set_tuning(Some(t.clone())),
        Err(int8rt::Error::InvalidParam { .. })
    ));
    let mut twin = layer.to_cuda(&dev).unwrap();
    twin.set_tuning(Some(t)).unwrap();
    twin.set_tuning(None).unwrap();
    assert_eq!(twin.tuning(), None);
}

#[test]
fn overlapped_gemv_launches_keep_the_bits_through_a_chain() {
    // Four layers (4096 wide: the GEMV streams long enough for launches to overlap) chained on
    // one stream with `forward_device_async`, every GEMV launched overlapped with the
    // activation quantization before it (programmatic dependent launch on sm_90; elsewhere an
    // ordinary launch): the CPU layers' bits at 1, 8 and 40 rows, twenty times over (a GEMV
    // reading its input before the quantization finished would differ from run to run); and a
    // NaN input still reported by the first layer's wait.
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(41);
    let widths = [4096, 4096, 1024, 4096, 512];
    let layers: Vec<QuantLinear> = widths
        .windows(2)
        .enumerate()
        .map(|(i, d)| {
            let w = rng.f32s(d[1] * d[0], 0.05);
            QuantLinear::from_f32(
                &format!("fc{i}"),
                &w,
                d[1],
                d[0],
                None,
                LinearConfig::default(),
            )
            .unwrap()
        })
        .collect();
    let gpu_layers: Vec<_> = layers
        .iter()
        .map(|l| {
            let mut g = l.to_cuda(&dev).unwrap();
            g.set_overlapped_launch(true);
            g
        })
        .collect();
    let s = dev.new_stream().unwrap();
    let ctx = Context::new();
    for m in [1, 8, 40] {
        let x = rng.f32s(m * widths[0], 1.0);
        let mut want = x.clone();
        for l in &layers {
            let mut y = vec![0f32; m * l.out_features()];
            l.forward(&ctx, &want, m, &mut OutBuf::F32(&mut y)).unwrap();
            want = y;
        }
        let xd = s.clone_htod(&x).unwrap();
        for rep in 0..20 {
            let mut bufs: Vec<CudaSlice<f32>> = widths[1..]
                .iter()
                .map(|&w| s.alloc_zeros::<f32>(m * w).unwrap())
                .collect();
            let mut pending = Vec::new();
            for (i, g) in gpu_layers.iter().enumerate() {
                let (done, rest) = bufs.split_at_mut(i);
                let input = if i == 0 { &xd } else { &done[i - 1] };
                pending.push(
                    g.forward_device_async(&s, input, m, CudaOut::F32(&mut rest[0]))
                        .unwrap(),
                );
            }
            for p in pending {
                p.wait().unwrap();
            }
            let y = s.clone_dtoh(bufs.last().unwrap()).unwrap();
            assert!(
                y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "m={m} repetition {rep}: the overlapped chain differs from the CPU layers"
            );
        }
    }
    let mut bad = rng.f32s(widths[0], 1.0);
    bad[7] = f32::NAN;
    let bd = s.clone_htod(&bad).unwrap();
    let mut y = s.alloc_zeros::<f32>(widths[1]).unwrap();
    let e = gpu_layers[0]
        .forward_device_async(&s, &bd, 1, CudaOut::F32(&mut y))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(matches!(e, int8rt::Error::NonFinite { .. }), "{e:?}");
}
