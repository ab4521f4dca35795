//! cuda/sim_tests.rs — every kernel run in the host simulation (DESIGN.md §2) through the same
//! host wrappers the GPU uses (`cuda::ops`), against `reference.rs` and the CPU layer, bit for
//! bit, over small and odd shapes, every scheme and every output type. Runs in every CI run.

use half::{bf16, f16};

use super::exec::Exec;
use super::ops::{
    self, Axis, DevAct, DevBias, DevLinear, DevOut, DevQIn, DevQRef, GemmDev, GemmKernel,
    ScratchCache,
};
use super::params::Status;
use super::registry::KernelId;
use super::reports::{Report, RING_SLOTS};
use super::sim::{self, SimExec};
use crate::gemm::{
    ActScales, Activations, Bias, Context, GemmArgs, OutBuf, OutKind, OutQuant, Path,
};
use crate::nn::{ActivationQuant, LinearConfig, QuantLinear};
use crate::quant::{Convention, Granularity, QuantParams, Scheme, TorchDtype};
use crate::reference;

/// SplitMix64 (the integration tests' generator).
pub(super) struct Rng(u64);
impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i32
    }
    pub(super) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub(super) fn f32s(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.unit() + self.unit() + self.unit() - 1.5) * sd * 2.0)
            .collect()
    }
}

#[test]
fn every_registered_kernel_runs_in_the_simulation() {
    // … with the cluster size build.rs read from its I8RT_ENTRY line (what the host rounds a
    // clustered kernel's grid to) equal to the one the simulation launches it with.
    let mut names: Vec<(String, u32)> = sim::lib()
        .kernel_names()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("sim_selftest"))
        .collect();
    names.sort();
    let mut ids: Vec<(String, u32)> = KernelId::ALL
        .iter()
        .map(|k| (k.name().to_string(), k.cluster()))
        .collect();
    ids.sort();
    assert_eq!(
        names, ids,
        "the simulation library and the registry list different kernels (or cluster sizes)"
    );
}

#[test]
fn every_per_thread_variable_of_the_simulation_is_swapped_with_its_fiber() {
    // A fiber build keeps sim.h's per-CUDA-thread state (each `I8RT_SIM_THREAD_LOCAL`) in plain
    // globals that sim_main.cpp's `FiberLocals::swap` exchanges with each fiber's copy: a
    // variable missing from that list would be shared by every CUDA thread of a block — silently,
    // wherever the threads happen not to interleave. Each must be swapped there, by name.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/sim");
    let header = std::fs::read_to_string(dir.join("sim.h")).unwrap();
    let main = std::fs::read_to_string(dir.join("sim_main.cpp")).unwrap();
    let start = main
        .find("void swap() {")
        .expect("FiberLocals::swap in sim_main.cpp");
    let swap = &main[start..start + main[start..].find("\n    }").unwrap()];
    let vars: Vec<&str> = header
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inline I8RT_SIM_THREAD_LOCAL "))
        .map(|rest| {
            let decl = rest.split(['=', ';']).next().unwrap().trim();
            decl.rsplit([' ', '*']).next().unwrap()
        })
        .collect();
    assert!(vars.len() >= 10, "{vars:?}");
    for v in &vars {
        assert!(
            swap.contains(&format!("sim::{v})")) || swap.contains(&format!("swap(sim::{v}")),
            "sim.h's per-thread `{v}` is not swapped in FiberLocals::swap:\n{swap}"
        );
    }
}

#[path = "../../tests/common/outputs.rs"]
mod outputs;
use outputs::{out_kinds, HostOut};

/// Run `f` with a device output initialised from `host` (sentinels), then read it back.
fn with_dev_out(
    e: &SimExec,
    host: &mut HostOut,
    f: impl FnOnce(&mut DevOut<'_, SimExec>) -> crate::Result<Path>,
) -> crate::Result<Path> {
    macro_rules! go {
        ($v:expr, $wrap:expr) => {{
            let mut d = e.upload($v)?;
            let p = f(&mut $wrap(&mut d))?;
            e.read(&d, $v)?;
            Ok(p)
        }};
    }
    match host {
        HostOut::I32(v) => go!(v, DevOut::I32),
        HostOut::F32(v) => go!(v, DevOut::F32),
        HostOut::F16(v) => go!(v, DevOut::F16),
        HostOut::Bf16(v) => go!(v, DevOut::Bf16),
        HostOut::I8(v, q) => {
            let q = *q;
            go!(v, |d| DevOut::I8(d, q))
        }
    }
}

/// First differing index, with both values' bits.
fn first_diff(a: &[u32], b: &[u32]) -> Option<(usize, u32, u32)> {
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i, *x, *y))
}

#[derive(Clone, Copy, Debug)]
pub(super) enum ActCase {
    S8Tensor,
    U8Tensor,
    S8Rows,
    U8Rows,
}

impl ActCase {
    /// Every activation mode, in the order the tests cycle their bias cases over.
    pub(super) const ALL: [ActCase; 4] = [
        ActCase::S8Tensor,
        ActCase::U8Tensor,
        ActCase::S8Rows,
        ActCase::U8Rows,
    ];
}

#[derive(Clone, Copy, Debug)]
pub(super) enum BiasCase {
    None,
    I32,
    F32,
}

/// One GEMM through `ops::gemm` in the simulation vs `reference::gemm`, for every output kind,
/// on the kernel family `kernel` of executor `e`; the call must report path `want`.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_gemm_on(
    e: &SimExec,
    kernel: GemmKernel,
    want_path: Path,
    rng: &mut Rng,
    m: usize,
    n: usize,
    k: usize,
    act: ActCase,
    bias: BiasCase,
    aligned: bool,
    extreme: bool,
) {
    let scratch = ScratchCache::new();
    let u8_act = matches!(act, ActCase::U8Tensor | ActCase::U8Rows);
    let (xs8, xu8): (Vec<i8>, Vec<u8>) = if extreme {
        (
            (0..m * k)
                .map(|i| if i % 3 == 0 { 127 } else { -128 })
                .collect(),
            vec![255; m * k],
        )
    } else {
        (
            (0..m * k).map(|_| rng.int(-128, 127) as i8).collect(),
            (0..m * k).map(|_| rng.int(0, 255) as u8).collect(),
        )
    };
    let w: Vec<i8> = if extreme {
        (0..n * k)
            .map(|i| if i % 3 == 0 { 127 } else { -127 })
            .collect()
    } else {
        (0..n * k).map(|_| rng.int(-127, 127) as i8).collect()
    };
    let per_channel = rng.int(0, 1) == 1;
    let w_scales: Vec<f32> = (0..if per_channel { n } else { 1 })
        .map(|_| 0.001 + rng.unit() * 0.02)
        .collect();
    let row_scales: Vec<f32> = (0..m).map(|_| 0.002 + rng.unit() * 0.05).collect();
    let row_zps: Vec<i32> = (0..m)
        .map(|i| if i % 4 == 0 { 255 } else { rng.int(0, 255) })
        .collect();
    let t_zp = if u8_act { rng.int(0, 255) } else { 0 };
    let t_scale = 0.003 + rng.unit() * 0.03;
    let act_scales = match act {
        ActCase::S8Tensor | ActCase::U8Tensor => ActScales::PerTensor {
            scale: t_scale,
            zero_point: t_zp,
        },
        ActCase::S8Rows => ActScales::PerRow {
            scales: &row_scales,
            zero_points: None,
        },
        ActCase::U8Rows => ActScales::PerRow {
            scales: &row_scales,
            zero_points: Some(&row_zps),
        },
    };
    let bias_i: Vec<i32> = (0..n).map(|_| rng.int(-100_000, 100_000)).collect();
    let bias_f: Vec<f32> = rng.f32s(n, 2.0);
    let bias_ref = match bias {
        BiasCase::None => Bias::None,
        BiasCase::I32 => Bias::I32(&bias_i),
        BiasCase::F32 => Bias::F32(&bias_f),
    };
    let x_ref = if u8_act {
        Activations::U8(&xu8)
    } else {
        Activations::S8(&xs8)
    };
    let args = GemmArgs {
        m,
        n,
        k,
        x: x_ref,
        act: act_scales,
        w: &w,
        w_scales: &w_scales,
        bias: bias_ref,
    };

    // Device operands: rows padded to 16 (aligned) or packed (unaligned, odd strides).
    let (lda, ldb) = if aligned {
        (ops::padded_k(k), ops::padded_k(k))
    } else {
        (k, k)
    };
    let pad = |src_i8: &[i8], rows: usize, ld: usize| -> Vec<i8> {
        let mut v = vec![0i8; (rows * ld).max(1)];
        for r in 0..rows {
            v[r * ld..r * ld + k].copy_from_slice(&src_i8[r * k..(r + 1) * k]);
        }
        v
    };
    let xu8_as_i8: Vec<i8> = xu8.iter().map(|&v| v as i8).collect();
    let xd_s8 = e.upload(&pad(&xs8, m, lda)).unwrap();
    let xd_u8 = e
        .upload(bytemuck::cast_slice::<i8, u8>(&pad(&xu8_as_i8, m, lda)))
        .unwrap();
    let wd = e.upload(&pad(&w, n, ldb)).unwrap();
    let wsum = e
        .upload(
            &reference::weight_row_sums(&w, n, k)
                .iter()
                .copied()
                .chain([0])
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let wsd: Vec<f32> = (0..n.max(1))
        .map(|j| {
            if per_channel {
                w_scales[j.min(n.saturating_sub(1))]
            } else {
                w_scales[0]
            }
        })
        .collect();
    let ws = e.upload(&wsd).unwrap();
    let (sc, zp): (Vec<f32>, Option<Vec<i32>>) = match act {
        ActCase::S8Tensor => (vec![t_scale], None),
        ActCase::U8Tensor => (vec![t_scale], Some(vec![t_zp])),
        ActCase::S8Rows => (row_scales.clone(), None),
        ActCase::U8Rows => (row_scales.clone(), Some(row_zps.clone())),
    };
    let scd = e
        .upload(&if sc.is_empty() { vec![1.0] } else { sc })
        .unwrap();
    let zpd = zp.map(|z| e.upload(&if z.is_empty() { vec![0] } else { z }).unwrap());
    let bid = e
        .upload(&if bias_i.is_empty() {
            vec![0]
        } else {
            bias_i.clone()
        })
        .unwrap();
    let bfd = e
        .upload(&if bias_f.is_empty() {
            vec![0.0]
        } else {
            bias_f.clone()
        })
        .unwrap();
    for kind in out_kinds() {
        if matches!(bias, BiasCase::F32) && kind == OutKind::I32 {
            continue;
        }
        let mut want = HostOut::new(kind, m * n);
        reference::gemm(&args, &mut want.as_buf()).unwrap();
        let mut got = HostOut::new(kind, m * n);
        let g = GemmDev {
            m,
            n,
            k,
            x: if u8_act {
                DevAct::U8(&xd_u8)
            } else {
                DevAct::S8(&xd_s8)
            },
            lda,
            w: &wd,
            ldb,
            wsum: &wsum,
            w_scale: &ws,
            act_scale: &scd,
            per_row: matches!(act, ActCase::S8Rows | ActCase::U8Rows),
            act_zp: zpd.as_ref(),
            bias: match bias {
                BiasCase::None => DevBias::None,
                BiasCase::I32 => DevBias::I32(&bid),
                BiasCase::F32 => DevBias::F32(&bfd),
            },
            status: None,
            kernel,
            overlap: false,
        };
        let path = with_dev_out(e, &mut got, |o| ops::gemm(e, &g, o, &scratch)).unwrap();
        assert_eq!(path, want_path, "{kernel:?} m={m} n={n} k={k}");
        if let Some((i, a, b)) = first_diff(&got.bits(), &want.bits()) {
            panic!(
                "GEMM {kernel:?} m={m} n={n} k={k} {act:?} {bias:?} aligned={aligned} extreme={extreme} {kind:?}: \
                 first mismatch at row {} col {}: simulated {a:#x}, reference {b:#x}",
                i / n.max(1),
                i % n.max(1)
            );
        }
    }
}

/// [`check_gemm_on`] with the dp4a kernels: the tile, and up to 8 rows the warp-per-row GEMV
/// (`GemmKernel::Dp4aWarpPerRow`; the 16-row one has its own test below).
#[allow(clippy::too_many_arguments)]
fn check_gemm(
    rng: &mut Rng,
    m: usize,
    n: usize,
    k: usize,
    act: ActCase,
    bias: BiasCase,
    aligned: bool,
    extreme: bool,
) {
    let e = SimExec::new();
    check_gemm_on(
        &e,
        GemmKernel::Dp4aWarpPerRow,
        Path::CudaDp4a,
        rng,
        m,
        n,
        k,
        act,
        bias,
        aligned,
        extreme,
    );
}

#[test]
fn gemm_skinny_kernel_matches_reference() {
    let mut rng = Rng::new(1);
    // M ≤ 8: the weight-streaming kernel; K around the 16-byte pieces, the 512-byte warp step
    // and its 4× unroll.
    for &(m, n, k) in &[
        (1, 1, 1),
        (1, 9, 16),
        (2, 17, 15),
        (3, 8, 17),
        (8, 5, 33),
        (1, 3, 513),
        (5, 2, 2049),
        (7, 9, 100),
    ] {
        for (i, act) in ActCase::ALL.into_iter().enumerate() {
            let bias = [BiasCase::None, BiasCase::I32, BiasCase::F32][(i + m) % 3];
            check_gemm(&mut rng, m, n, k, act, bias, true, false);
            check_gemm(&mut rng, m, n, k, act, bias, false, false);
        }
    }
}

#[test]
fn dp4a_gemv16_matches_reference_around_its_steps() {
    // The 16-row dp4a GEMV (forced: `GemmKernel::Dp4aGemv16`): M = 1 (its one-row kernel) and
    // 2 … 8 (the eight-row one), K around the 64-byte warp step, its 8-warp round (512 bytes)
    // and the two-step register batch, N around the 16-row block; every activation mode. The
    // launch log shows which kernels ran.
    let mut rng = Rng::new(71);
    let e = SimExec::new();
    for &(m, n, k) in &[
        (1, 1, 1),
        (1, 16, 64),
        (1, 17, 63),
        (1, 40, 1024 + 65),
        (2, 15, 512),
        (3, 33, 577),
        (8, 31, 2 * 512 + 64 * 3 + 7),
        (5, 16, 16),
        (8, 3, 0),
    ] {
        for (i, act) in ActCase::ALL.into_iter().enumerate() {
            let bias = [BiasCase::None, BiasCase::I32, BiasCase::F32][(i + m + n) % 3];
            check_gemm_on(
                &e,
                GemmKernel::Dp4aGemv16,
                Path::CudaDp4a,
                &mut rng,
                m,
                n,
                k,
                act,
                bias,
                true,
                false,
            );
            let ran = e.take_launched();
            let u8_act = matches!(act, ActCase::U8Tensor | ActCase::U8Rows);
            let want = match (m, u8_act) {
                (1, false) => KernelId::GemvDp4a16M1S8,
                (1, true) => KernelId::GemvDp4a16M1U8,
                (_, false) => KernelId::GemvDp4a16M8S8,
                (_, true) => KernelId::GemvDp4a16M8U8,
            };
            assert!(
                !ran.is_empty() && ran.iter().all(|&k| k == want),
                "m={m} n={n} k={k} {act:?}: {ran:?}"
            );
        }
    }
    let st = e.take_stats();
    assert_eq!(st.mma + st.wgmma + st.ldmatrix + st.cp_async, 0, "{st:?}");
    // Extreme operands at depth: any saturating step shows.
    for act in [ActCase::S8Tensor, ActCase::U8Rows] {
        check_gemm_on(
            &e,
            GemmKernel::Dp4aGemv16,
            Path::CudaDp4a,
            &mut rng,
            4,
            20,
            1200,
            act,
            BiasCase::I32,
            true,
            true,
        );
    }
    // (unaligned rows are refused with a typed error: sim_mma_tests.rs,
    // `path_choice_follows_architecture_alignment_and_forcing`)
}

#[test]
fn dp4a_narrow_gemv_matches_reference_where_a_layer_outgrows_one_wave() {
    // One activation row on a layer with more 16-row blocks than three per SM (here a simulated
    // GPU of one SM: more than 48 weight rows): `Dp4a` runs the narrow block (4 warps, three steps
    // per register batch) — K around its 64-byte step, its 4-warp round (256 bytes), the
    // three-step batch (768) and the step that crosses K; every activation mode — with the
    // reference's bits. At 48 rows, and forced (`Dp4aGemv16`), the 8-warp block.
    use KernelId::*;
    let mut rng = Rng::new(73);
    let e = SimExec::with_arch(90, 1);
    for &(n, k) in &[
        (49, 1),
        (64, 64),
        (50, 255),
        (80, 256),
        (97, 768 + 64 + 7),
        (65, 2000),
    ] {
        for (i, act) in ActCase::ALL.into_iter().enumerate() {
            let bias = [BiasCase::None, BiasCase::I32, BiasCase::F32][(i + n) % 3];
            let u8_act = matches!(act, ActCase::U8Tensor | ActCase::U8Rows);
            let want = if u8_act {
                GemvDp4a16M1NarrowU8
            } else {
                GemvDp4a16M1NarrowS8
            };
            let case = (GemmKernel::Dp4a, (1, n, k), act, bias);
            check_gemm_runs(&e, &mut rng, case, true, i == 3, want);
        }
    }
    for (kernel, n, want) in [
        (GemmKernel::Dp4a, 48, GemvDp4a16M1S8),
        (GemmKernel::Dp4aGemv16, 97, GemvDp4a16M1S8),
        (GemmKernel::Dp4a, 97, GemvDp4a16M1NarrowS8),
    ] {
        let case = (kernel, (1, n, 300), ActCase::S8Rows, BiasCase::I32);
        check_gemm_runs(&e, &mut rng, case, true, false, want);
    }
}

/// [`check_gemm_on`] for `(kernel, (m, n, k), act, bias)` on `e`, which must launch `want` and
/// nothing else (once per output type).
fn check_gemm_runs(
    e: &SimExec,
    rng: &mut Rng,
    (kernel, (m, n, k), act, bias): (GemmKernel, (usize, usize, usize), ActCase, BiasCase),
    aligned: bool,
    extreme: bool,
    want: KernelId,
) {
    let path = Path::CudaDp4a;
    check_gemm_on(e, kernel, path, rng, m, n, k, act, bias, aligned, extreme);
    let ran = e.take_launched();
    assert!(
        !ran.is_empty() && ran.iter().all(|&k| k == want),
        "{kernel:?} m={m} n={n} k={k} aligned={aligned} {act:?}: {ran:?}"
    );
}

#[test]
fn dp4a_runs_the_16_row_gemv_on_aligned_rows_and_a_warp_per_row_on_others() {
    // The dp4a family's decode GEMV as it is chosen (ninth session, from the H200's figures):
    // `Dp4a` — and `Auto` where it means dp4a, before sm_80 — run the 16-row GEMV on aligned
    // rows up to 8 and the warp-per-row one on unaligned rows; `Dp4aWarpPerRow` always the
    // latter; 9 rows the tile. Each with the reference's bits (check_gemm_on).
    use KernelId::*;
    let mut rng = Rng::new(72);
    let sm90 = SimExec::new();
    let sm61 = SimExec::with_arch(61, 6);
    for (e, kernel, m, aligned, want) in [
        (&sm90, GemmKernel::Dp4a, 1, true, GemvDp4a16M1S8),
        (&sm90, GemmKernel::Dp4a, 8, true, GemvDp4a16M8S8),
        (&sm90, GemmKernel::Dp4a, 1, false, GemvDp4aS8Unaligned),
        (&sm90, GemmKernel::Dp4a, 9, true, GemmDp4aS8),
        (&sm90, GemmKernel::Dp4aWarpPerRow, 1, true, GemvDp4aS8),
        (&sm90, GemmKernel::Dp4aWarpPerRow, 8, true, GemvDp4aS8),
        (&sm61, GemmKernel::Auto, 3, true, GemvDp4a16M8S8),
        (&sm61, GemmKernel::Auto, 3, false, GemvDp4aS8Unaligned),
    ] {
        let case = (kernel, (m, 37, 600), ActCase::S8Rows, BiasCase::I32);
        check_gemm_runs(e, &mut rng, case, aligned, false, want);
    }
}

#[test]
fn gemm_tiled_kernel_matches_reference() {
    let mut rng = Rng::new(2);
    // M > 8: 128 × 128 tiles, k in 32-byte steps; edges of M, N, K, and tiles ± 1.
    for &(m, n, k) in &[
        (9, 1, 1),
        (17, 13, 31),
        (9, 129, 33),
        (129, 3, 64),
        (12, 7, 0),
        (33, 130, 47),
    ] {
        for (i, act) in ActCase::ALL.into_iter().enumerate() {
            let bias = [BiasCase::None, BiasCase::I32, BiasCase::F32][(i + n) % 3];
            check_gemm(&mut rng, m, n, k, act, bias, true, false);
            check_gemm(&mut rng, m, n, k, act, bias, false, false);
        }
    }
}

#[test]
fn gemm_extreme_operands_are_exact() {
    // All-extreme operands with K large enough that any saturating step would show: |x·w| sums
    // to ~4·10^7 per output on both kernels.
    let mut rng = Rng::new(3);
    for &(m, n, k) in &[(2, 3, 1200), (10, 3, 1200)] {
        for act in [ActCase::S8Tensor, ActCase::U8Tensor, ActCase::U8Rows] {
            check_gemm(&mut rng, m, n, k, act, BiasCase::I32, true, true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The device layer (activation quantization + GEMM) vs the CPU layer.
// ---------------------------------------------------------------------------------------------

/// Every activation-quantization mode the layer supports.
fn act_modes() -> Vec<ActivationQuant> {
    let stat = |c: Convention, lo: f32, hi: f32| {
        ActivationQuant::Static(QuantParams::from_range(c, lo, hi).unwrap())
    };
    vec![
        ActivationQuant::Dynamic {
            scheme: Scheme::Symmetric,
            granularity: Granularity::PerRow,
        },
        ActivationQuant::Dynamic {
            scheme: Scheme::Asymmetric,
            granularity: Granularity::PerRow,
        },
        ActivationQuant::Dynamic {
            scheme: Scheme::Symmetric,
            granularity: Granularity::PerTensor,
        },
        ActivationQuant::Dynamic {
            scheme: Scheme::Asymmetric,
            granularity: Granularity::PerTensor,
        },
        stat(Convention::Int8rt, -2.5, 2.5),
        ActivationQuant::Static(QuantParams::asymmetric(-1.0, 3.0).unwrap()),
        stat(Convention::CompressedTensors, -2.0, 2.0),
        stat(
            Convention::TorchAo {
                dtype: TorchDtype::QUInt8,
                symmetric: false,
                reduce_range: false,
            },
            -1.5,
            2.5,
        ),
        stat(
            Convention::PytorchQuantization {
                narrow_range: true,
                unsigned: false,
            },
            -3.0,
            3.0,
        ),
    ]
}

/// `DevLinear<SimExec>::forward_host` vs `QuantLinear::forward` on the reference path, bit for
/// bit, on both kernel families: the default (the tensor cores on the simulated sm_90) and the
/// forced dp4a path, each reporting its path.
#[allow(clippy::too_many_arguments)]
fn check_layer(
    rng: &mut Rng,
    m: usize,
    k: usize,
    n: usize,
    act: ActivationQuant,
    with_bias: bool,
    per_tensor_w: bool,
) {
    let seed = rng.next();
    // Auto on the simulated sm_90 with the layer's aligned rows: the tensor cores at every M
    // (the weight-streaming GEMV up to 64 rows).
    let auto = Path::CudaMma;
    for (kernel, want) in [(GemmKernel::Auto, auto), (GemmKernel::Dp4a, Path::CudaDp4a)] {
        let mut r = Rng::new(seed);
        check_layer_on(&mut r, m, k, n, act, with_bias, per_tensor_w, kernel, want);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_layer_on(
    rng: &mut Rng,
    m: usize,
    k: usize,
    n: usize,
    act: ActivationQuant,
    with_bias: bool,
    per_tensor_w: bool,
    kernel: GemmKernel,
    want_path: Path,
) {
    let w = rng.f32s(n * k, 0.5);
    let bias = rng.f32s(n, 1.0);
    let mut cfg = LinearConfig {
        activations: act,
        ..Default::default()
    };
    if per_tensor_w {
        cfg.weights.granularity = Granularity::PerTensor;
    }
    let layer = QuantLinear::from_f32("fc", &w, n, k, with_bias.then_some(&bias[..]), cfg).unwrap();
    let e = SimExec::new();
    let mut dev = DevLinear::new(&e, &layer).unwrap();
    dev.kernel = kernel;
    // Inputs: mostly normal, with outliers beyond a static range, a zero row and a constant row.
    let mut x = rng.f32s(m * k, 1.0);
    for (i, v) in x.iter_mut().enumerate() {
        if i % 37 == 5 {
            *v *= 9.0;
        }
    }
    if m > 2 {
        x[k..2 * k].fill(0.0);
        x[2 * k..3 * k].fill(-0.75);
    }
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    for kind in out_kinds() {
        let mut want = HostOut::new(kind, m * n);
        let cpu = layer.forward(&ctx, &x, m, &mut want.as_buf());
        let mut got = HostOut::new(kind, m * n);
        let gpu = dev.forward_host(&e, &x, m, &mut got.as_buf());
        match (cpu, gpu) {
            (Ok(_), Ok(p)) => {
                assert_eq!(p, want_path, "{kernel:?}");
                if let Some((i, a, b)) = first_diff(&got.bits(), &want.bits()) {
                    panic!(
                        "layer {kernel:?} m={m} k={k} n={n} {act:?} bias={with_bias} {kind:?}: first mismatch at row {} col {}: \
                         simulated {a:#x}, CPU {b:#x}",
                        i / n,
                        i % n
                    );
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => {
                panic!("CPU and simulation disagree on success: {a:?} vs {b:?} ({act:?} {kind:?})")
            }
        }
    }
}

#[test]
fn device_layer_matches_cpu_layer_every_mode_and_output() {
    let mut rng = Rng::new(4);
    for (i, act) in act_modes().into_iter().enumerate() {
        // A skinny and a tiled shape per mode, odd K (row padding), odd N.
        check_layer(&mut rng, 3, 19, 5, act, i % 2 == 0, i % 3 == 0);
        check_layer(&mut rng, 11, 40, 9, act, i % 2 == 1, i % 3 == 1);
    }
}

#[test]
fn device_layer_reports_non_finite_input_like_the_cpu() {
    let mut rng = Rng::new(5);
    // Also a layer with no outputs: nothing to write, the input refused all the same.
    for (n, act) in [3, 0]
        .into_iter()
        .flat_map(|n| act_modes().into_iter().map(move |act| (n, act)))
    {
        let (m, k) = (4, 6);
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
        let e = SimExec::new();
        let dev = DevLinear::new(&e, &layer).unwrap();
        let mut x = rng.f32s(m * k, 1.0);
        x[7] = f32::NAN;
        x[15] = f32::INFINITY;
        x[20] = f32::NEG_INFINITY;
        let ctx = Context::new().with_path(Path::Reference);
        let mut y_cpu = vec![0.0f32; m * n];
        let cpu = layer
            .forward(&ctx, &x, m, &mut OutBuf::F32(&mut y_cpu))
            .unwrap_err();
        let mut y = vec![7.5f32; m * n];
        let gpu = dev
            .forward_host(&e, &x, m, &mut OutBuf::F32(&mut y))
            .unwrap_err();
        assert_eq!(gpu.to_string(), cpu.to_string(), "n = {n}, {act:?}");
        // Dynamic scales refuse all three non-finite values; a static scale only the NaN (it
        // saturates ±inf).
        let want_count = if matches!(act, ActivationQuant::Static(_)) {
            1
        } else {
            3
        };
        assert!(
            matches!(
                gpu,
                crate::Error::NonFinite {
                    count,
                    first_index: 7,
                    ..
                } if count == want_count
            ),
            "n = {n}: {gpu:?}"
        );
        assert!(
            y.iter().all(|&v| v == 7.5),
            "the output was written despite the error"
        );
        // Without the NaN, a static scale takes the infinities (saturated to the range ends) on
        // both, with the same bits; dynamic scales still refuse them.
        x[7] = 0.5;
        let cpu = layer.forward(&ctx, &x, m, &mut OutBuf::F32(&mut y_cpu));
        let gpu = dev.forward_host(&e, &x, m, &mut OutBuf::F32(&mut y));
        if matches!(act, ActivationQuant::Static(_)) {
            cpu.unwrap();
            gpu.unwrap();
            assert!(
                y.iter()
                    .zip(&y_cpu)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "n = {n}, {act:?}: saturated infinities"
            );
        } else {
            assert_eq!(gpu.unwrap_err().to_string(), cpu.unwrap_err().to_string());
        }
    }
}

#[test]
fn device_layer_reuses_its_activation_buffers_across_forwards_exactly() {
    // One layer per activation mode, forwards of 7, 2, 9 (one with a NaN), 9 and 1 rows on one
    // stream: each matches the CPU bit for bit although every forward after the first writes
    // over the previous one's quantized activations, scales and range words; once they are
    // large enough, a forward allocates nothing — its report word is a slot of the stream's
    // report ring, made at the first forward — not even after the one that met the NaN (its
    // slot is written clear again, not replaced). Launches: the quantization's clearing launch
    // only where per-tensor dynamic activations need their range words reset, then the
    // quantization, then the GEMM.
    let mut rng = Rng::new(61);
    let (k, n) = (40, 9);
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    for act in act_modes() {
        let w = rng.f32s(n * k, 0.5);
        let cfg = LinearConfig {
            activations: act,
            ..Default::default()
        };
        let layer = QuantLinear::from_f32("fc", &w, n, k, None, cfg).unwrap();
        let e = SimExec::new();
        let dev = DevLinear::new(&e, &layer).unwrap();
        let mut largest = 0;
        let per_tensor_dynamic = matches!(
            act,
            ActivationQuant::Dynamic {
                granularity: Granularity::PerTensor,
                ..
            }
        );
        for (i, m) in [7usize, 2, 9, 9, 1].into_iter().enumerate() {
            let mut x = rng.f32s(m * k, 1.0);
            if i == 2 {
                x[k + 3] = f32::NAN;
            }
            let mut want = vec![0f32; m * n];
            let cpu = layer.forward(&ctx, &x, m, &mut OutBuf::F32(&mut want));
            let xd = e.upload(&x).unwrap();
            let mut yd = e.upload(&vec![7.5f32; m * n]).unwrap();
            e.take_allocs();
            e.take_launched();
            let gpu = dev.forward(&e, &xd, m, &mut DevOut::F32(&mut yd));
            let allocs = e.take_allocs();
            if m <= largest {
                assert_eq!(allocs, 0, "{act:?} m={m} (forward {i})");
            }
            largest = largest.max(m);
            let launched = e.take_launched();
            let quant = launched
                .iter()
                .filter(|k| matches!(k, KernelId::ActQuantS8 | KernelId::ActQuantU8))
                .count();
            // (per tensor: clear + range + quantize; per row or static: quantize alone, the
            // first forward included — its ring slot was uploaded clear)
            assert_eq!(
                quant,
                if per_tensor_dynamic { 3 } else { 1 },
                "{act:?} m={m}: {launched:?}"
            );
            assert_eq!(
                launched.len(),
                quant + 1,
                "{act:?} m={m}: one GEMM: {launched:?}"
            );
            let mut got = vec![0f32; m * n];
            e.read(&yd, &mut got).unwrap();
            match (cpu, gpu) {
                (Ok(_), Ok(_)) => {
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{act:?} m={m}");
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string());
                    assert!(got.iter().all(|&v| v == 7.5), "{act:?}: written on error");
                }
                (a, b) => panic!("{act:?} m={m}: CPU {a:?}, simulation {b:?}"),
            }
        }
    }
}

#[test]
fn host_forwards_reuse_their_device_buffers_and_keep_the_bits() {
    // Host-slice forwards on one stream: after the first, a forward of as many rows or fewer
    // allocates nothing (input, output and quantized activations are the stream's from the last
    // call, the report word a slot of the stream's report ring — written clear again after the
    // NaN, not replaced), a larger one or another output type only what grew or changed; each
    // matches the CPU bit for bit (an output buffer reused from a larger call, or reused across
    // a NaN input's refusal, must not leak into the result).
    let mut rng = Rng::new(83);
    let (k, n) = (40, 9);
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    let w = rng.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
    let e = SimExec::new();
    let dev = DevLinear::new(&e, &layer).unwrap();
    // (rows, f16 output, NaN in the input, allocations expected or None for the first call;
    // the default layer: dynamic symmetric per-row activations)
    for (m, half, nan, allocs) in [
        (6usize, false, false, None),
        (6, false, false, Some(0)),
        (3, false, false, Some(0)),
        (6, true, false, Some(1)),
        (6, true, true, Some(0)),
        (6, true, false, Some(0)),
        // (grown: input, output, quantized activations, per-row scales — symmetric: no zero
        // points)
        (8, true, false, Some(4)),
        (2, false, false, Some(1)),
    ] {
        let mut x = rng.f32s(m * k, 1.0);
        if nan {
            x[k + 1] = f32::NAN;
        }
        e.take_allocs();
        let (cpu, gpu) = if half {
            let mut want = vec![f16::ZERO; m * n];
            let mut got = vec![f16::ZERO; m * n];
            let c = layer.forward(&ctx, &x, m, &mut OutBuf::F16(&mut want));
            let g = dev.forward_host(&e, &x, m, &mut OutBuf::F16(&mut got));
            let same = want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            (c.map(|_| same), g)
        } else {
            let mut want = vec![0f32; m * n];
            let mut got = vec![0f32; m * n];
            let c = layer.forward(&ctx, &x, m, &mut OutBuf::F32(&mut want));
            let g = dev.forward_host(&e, &x, m, &mut OutBuf::F32(&mut got));
            let same = want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            (c.map(|_| same), g)
        };
        let got_allocs = e.take_allocs();
        match (cpu, gpu) {
            (Ok(same), Ok(_)) => assert!(same, "m={m} f16={half}: bits differ"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("m={m}: CPU {a:?}, simulation {b:?}"),
        }
        if let Some(want) = allocs {
            assert_eq!(got_allocs, want, "m={m} f16={half} nan={nan}");
        }
    }
}

#[test]
fn deferred_forward_checks_later_with_the_same_bits_and_errors() {
    // `enqueue` + `check_input` (the deferred forward of `CudaQuantLinear::forward_device_async`)
    // against `forward`: the same output bits when the input is clean; the same error, and the
    // output untouched, when it is not — reported only by the later check, after a clean call
    // was enqueued behind it.
    let mut rng = Rng::new(15);
    let (m, k, n) = (3, 40, 24);
    let w = rng.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("proj", &w, n, k, None, LinearConfig::default()).unwrap();
    let e = SimExec::new();
    let dev = DevLinear::new(&e, &layer).unwrap();
    let clean = rng.f32s(m * k, 1.0);
    let mut bad = clean.clone();
    bad[50] = f32::NAN;
    let (xc, xb) = (e.upload(&clean).unwrap(), e.upload(&bad).unwrap());

    let mut want = e.upload(&vec![0f32; m * n]).unwrap();
    dev.forward(&e, &xc, m, &mut DevOut::F32(&mut want))
        .unwrap();
    let mut y_bad = e.upload(&vec![7.5f32; m * n]).unwrap();
    let mut y_ok = e.upload(&vec![0f32; m * n]).unwrap();
    let (_, s_bad) = dev
        .enqueue(&e, &xb, m, &mut DevOut::F32(&mut y_bad))
        .unwrap();
    let (path, s_ok) = dev
        .enqueue(&e, &xc, m, &mut DevOut::F32(&mut y_ok))
        .unwrap();
    assert_eq!(path, Path::CudaMma);

    // The first report read copies the stream's whole report ring back once; that copy also
    // settles the forward enqueued after it, whose report then costs no read at all.
    e.take_reads();
    let err = dev.check_input(&e, s_bad).unwrap_err();
    assert_eq!(e.take_reads(), 1, "one copy for the first report");
    dev.check_input(&e, s_ok).unwrap();
    assert_eq!(e.take_reads(), 0, "the second report, settled by that copy");
    let sync_err = dev
        .forward(
            &e,
            &xb,
            m,
            &mut DevOut::F32(&mut e.upload(&vec![0f32; m * n]).unwrap()),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), sync_err.to_string());
    assert!(
        matches!(err, crate::Error::NonFinite { ref tensor, count: 1, first_index: 50 } if tensor == "proj.input"),
        "{err:?}"
    );
    let read = |b: &<SimExec as Exec>::Buf<f32>| {
        let mut v = vec![0f32; m * n];
        e.read(b, &mut v).unwrap();
        v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
    };
    assert_eq!(read(&y_ok), read(&want));
    assert!(
        read(&y_bad).iter().all(|&b| b == 7.5f32.to_bits()),
        "written despite NaN"
    );
    // Slots that reported NaN are written clear again: the next forwards on them read clean.
    for _ in 0..3 {
        let mut y = e.upload(&vec![0f32; m * n]).unwrap();
        dev.forward(&e, &xc, m, &mut DevOut::F32(&mut y)).unwrap();
        assert_eq!(read(&y), read(&want));
    }

    // A decode step enqueues every layer's forward and then reads every report (the H200's
    // `gpu_latency`: 300 pending). Two layers share the stream's ring: the whole chain costs one
    // copy back, however the reports are read (in order, then last first), with no allocation
    // and no clearing launch, and each report is its own forward's — the NaN at forward 150
    // names its layer, the slots it dirtied report clean in the next round. (With a status word
    // per forward, before, each report was a copy and a wait of its own: 300 per chain.)
    let other = QuantLinear::from_f32(
        "other",
        &rng.f32s(n * k, 0.5),
        n,
        k,
        None,
        LinearConfig::default(),
    )
    .unwrap();
    let dev2 = DevLinear::new(&e, &other).unwrap();
    let chain = 300;
    let mut y = e.upload(&vec![0f32; m * n]).unwrap();
    let layer_of = |i: usize| if i.is_multiple_of(3) { &dev2 } else { &dev };
    for round in 0..3 {
        e.take_allocs();
        e.take_launched();
        e.take_reads();
        let mut reports: Vec<_> = (0..chain)
            .map(|i| {
                let x = if i == 150 { &xb } else { &xc };
                let r = layer_of(i).enqueue(&e, x, m, &mut DevOut::F32(&mut y));
                (i, r.unwrap().1)
            })
            .collect();
        let allocs = e.take_allocs();
        assert_eq!(e.take_launched().len(), 2 * chain, "round {round}");
        if round > 0 {
            assert_eq!(allocs, 0, "round {round}: allocations for {chain} forwards");
        }
        if round == 1 {
            reports.reverse();
        }
        for (i, r) in reports {
            let res = layer_of(i).check_input(&e, r);
            match res {
                Err(crate::Error::NonFinite { ref tensor, .. }) if i == 150 => {
                    assert_eq!(tensor, "other.input")
                }
                Ok(()) if i != 150 => {}
                other => panic!("round {round}, forward {i}: {other:?}"),
            }
        }
        assert_eq!(
            e.take_reads(),
            1,
            "round {round}: copies for {chain} reports"
        );
    }
    assert_eq!(
        e.report_ring_count(),
        1,
        "one ring for the stream, both layers"
    );

    // Reports dropped unread: their slots come back at the next copy, and the NaN they would
    // have reported does not reach the slots' next users.
    for _ in 0..10 {
        drop(dev.enqueue(&e, &xb, m, &mut DevOut::F32(&mut y)).unwrap().1);
    }
    for _ in 0..12 {
        dev.forward(&e, &xc, m, &mut DevOut::F32(&mut y)).unwrap();
    }

    // More forwards pending than the ring has slots: the ones beyond get a word of their own
    // (an upload each), and report like the others.
    let over = RING_SLOTS + 3;
    e.take_allocs();
    let reports: Vec<_> = (0..over)
        .map(|i| {
            let x = if i == over - 2 { &xb } else { &xc };
            dev.enqueue(&e, x, m, &mut DevOut::F32(&mut y)).unwrap().1
        })
        .collect();
    assert_eq!(
        e.take_allocs(),
        3,
        "words of their own past {RING_SLOTS} pending"
    );
    e.take_reads();
    for (i, r) in reports.into_iter().enumerate() {
        assert_eq!(
            dev.check_input(&e, r).is_err(),
            i == over - 2,
            "forward {i}"
        );
    }
    assert_eq!(
        e.take_reads(),
        1 + 3,
        "one copy for the ring, one read per own word"
    );
}

#[test]
fn a_failed_clearing_write_surfaces_once_and_later_forwards_report_on_their_own_words() {
    // The ring is written clear behind a copy that found NaN/±inf. When that write fails (a
    // driver error), the words can no longer be trusted clear: the wait that triggered it gets
    // the driver's error, the reports that copy captured still read true, and every later
    // forward takes a word of its own (an upload each) — so no stale NaN count reaches a clean
    // forward on a reused slot.
    let mut rng = Rng::new(23);
    let (m, k, n) = (2, 48, 16);
    let layer = QuantLinear::from_f32(
        "fw",
        &rng.f32s(n * k, 0.5),
        n,
        k,
        None,
        LinearConfig::default(),
    )
    .unwrap();
    let e = SimExec::new();
    let dev = DevLinear::new(&e, &layer).unwrap();
    let clean = rng.f32s(m * k, 1.0);
    let mut bad = clean.clone();
    bad[7] = f32::NEG_INFINITY;
    let (xc, xb) = (e.upload(&clean).unwrap(), e.upload(&bad).unwrap());
    let mut want = e.upload(&vec![0f32; m * n]).unwrap();
    dev.forward(&e, &xc, m, &mut DevOut::F32(&mut want))
        .unwrap();
    let bits = |b: &<SimExec as Exec>::Buf<f32>| {
        let mut v = vec![0f32; m * n];
        e.read(b, &mut v).unwrap();
        v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
    };
    let want = bits(&want);

    // Slots 0 … 3; slot 2's forward sees −inf.
    let mut ys: Vec<_> = (0..4)
        .map(|_| e.upload(&vec![0f32; m * n]).unwrap())
        .collect();
    let reports: Vec<_> = ys
        .iter_mut()
        .enumerate()
        .map(|(i, y)| {
            let x = if i == 2 { &xb } else { &xc };
            dev.enqueue(&e, x, m, &mut DevOut::F32(y)).unwrap().1
        })
        .collect();
    let mut reports = reports.into_iter();
    e.fail_next_writes(1);
    e.take_reads();
    let err = dev.check_input(&e, reports.next().unwrap()).unwrap_err();
    assert!(
        matches!(err, crate::Error::Cuda { ref detail, .. } if detail.contains("simulated")),
        "{err:?}"
    );
    assert_eq!(e.take_reads(), 1, "the copy ran before the write failed");
    // What the copy captured still reads true, without another copy.
    dev.check_input(&e, reports.next().unwrap()).unwrap();
    let err = dev.check_input(&e, reports.next().unwrap()).unwrap_err();
    assert!(
        matches!(err, crate::Error::NonFinite { ref tensor, count: 1, first_index: 7 } if tensor == "fw.input"),
        "{err:?}"
    );
    dev.check_input(&e, reports.next().unwrap()).unwrap();
    assert_eq!(e.take_reads(), 0, "captured by the first copy");
    for (i, y) in ys.iter().enumerate() {
        if i != 2 {
            assert_eq!(bits(y), want, "forward {i}");
        }
    }

    // Later forwards: a word each (slot 2's word still holds the −inf count on the device).
    let mut y = e.upload(&vec![0f32; m * n]).unwrap();
    e.take_allocs();
    e.take_reads();
    let later: Vec<_> = (0..6)
        .map(|i| {
            let x = if i == 4 { &xb } else { &xc };
            dev.enqueue(&e, x, m, &mut DevOut::F32(&mut y)).unwrap().1
        })
        .collect();
    assert_eq!(e.take_allocs(), 6, "a word of its own per forward");
    for (i, r) in later.into_iter().enumerate() {
        assert_eq!(dev.check_input(&e, r).is_err(), i == 4, "later forward {i}");
    }
    assert_eq!(e.take_reads(), 6, "one read per own word");
    let mut y = e.upload(&vec![0f32; m * n]).unwrap();
    dev.forward(&e, &xc, m, &mut DevOut::F32(&mut y)).unwrap();
    assert_eq!(bits(&y), want);
    assert_eq!(e.report_ring_count(), 1);
}

#[test]
fn report_ring_gives_each_forward_its_own_report_under_any_order_of_waits_and_drops() {
    // Random interleavings on one stream: deferred forwards of three layers (every dynamic and a
    // static activation mode) on clean inputs or ones holding NaN or ±inf at a random place,
    // synchronous forwards, reports read in random order, reports dropped unread. Every report
    // read is its own forward's — the CPU layer's error for that input, or its output bits — and
    // no read costs more than one copy back, however many forwards are pending.
    let mut rng = Rng::new(91);
    let (k, n) = (40, 24);
    let e = SimExec::new();
    let modes = act_modes();
    let layers: Vec<QuantLinear> = [0usize, 3, modes.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, &mode)| {
            let cfg = LinearConfig {
                activations: modes[mode],
                ..LinearConfig::default()
            };
            QuantLinear::from_f32(&format!("l{i}"), &rng.f32s(n * k, 0.5), n, k, None, cfg).unwrap()
        })
        .collect();
    let devs: Vec<DevLinear<SimExec>> = layers
        .iter()
        .map(|l| DevLinear::new(&e, l).unwrap())
        .collect();
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    // The CPU's answer for layer `l` on `x`: its output bits or its error.
    let cpu = |l: usize, x: &[f32], m: usize| -> std::result::Result<Vec<u32>, String> {
        let mut y = vec![0f32; m * n];
        layers[l]
            .forward(&ctx, x, m, &mut OutBuf::F32(&mut y))
            .map(|_| bits(&y))
            .map_err(|err| err.to_string())
    };
    let input = |rng: &mut Rng| {
        let m = rng.int(1, 3) as usize;
        let mut x = rng.f32s(m * k, 1.0);
        match rng.int(0, 5) {
            0 => x[rng.int(0, (m * k) as i32 - 1) as usize] = f32::NAN,
            1 => x[rng.int(0, (m * k) as i32 - 1) as usize] = f32::NEG_INFINITY,
            _ => {}
        }
        (m, x)
    };
    type Y = <SimExec as Exec>::Buf<f32>;
    type Pending = (usize, String, Report<SimExec>, Y, usize, Vec<f32>);
    let mut pending: Vec<Pending> = Vec::new();
    let check = |l: usize, r: crate::Result<()>, y: &Y, m: usize, x: &[f32], what: &str| {
        let want = cpu(l, x, m);
        match (r, want) {
            (Ok(()), Ok(want)) => {
                let mut got = vec![0f32; m * n];
                e.read(y, &mut got).unwrap();
                assert_eq!(bits(&got), want, "{what}: output bits");
            }
            (Err(got), Err(want)) => assert_eq!(got.to_string(), want, "{what}"),
            (got, want) => panic!("{what}: simulation {got:?}, CPU {want:?}"),
        }
    };
    let (mut errors, mut most_pending) = (0, 0);
    // A report read, and the copies back it took.
    let read = |l: usize, r: Report<SimExec>| {
        e.take_reads();
        let res = devs[l].check_input(&e, r);
        (res, e.take_reads())
    };
    for op in 0..500 {
        let what = format!("op {op}");
        let mut copies = 0;
        match rng.int(0, 9) {
            0..=4 => {
                let l = rng.int(0, 2) as usize;
                let (m, x) = input(&mut rng);
                let xd = e.upload(&x).unwrap();
                let mut y = e.upload(&vec![0f32; m * n]).unwrap();
                let (_, r) = devs[l]
                    .enqueue(&e, &xd, m, &mut DevOut::F32(&mut y))
                    .unwrap();
                pending.push((l, what.clone(), r, y, m, x));
                most_pending = most_pending.max(pending.len());
            }
            5..=6 if !pending.is_empty() => {
                let i = rng.int(0, pending.len() as i32 - 1) as usize;
                let (l, enq, r, y, m, x) = pending.swap_remove(i);
                let (res, c) = read(l, r);
                copies += c;
                errors += usize::from(res.is_err());
                check(l, res, &y, m, &x, &format!("{what}: read of {enq}"));
            }
            7 if !pending.is_empty() => {
                let i = rng.int(0, pending.len() as i32 - 1) as usize;
                drop(pending.swap_remove(i));
            }
            8 => {
                let l = rng.int(0, 2) as usize;
                let (m, x) = input(&mut rng);
                let xd = e.upload(&x).unwrap();
                let mut y = e.upload(&vec![0f32; m * n]).unwrap();
                e.take_reads();
                let res = devs[l]
                    .forward(&e, &xd, m, &mut DevOut::F32(&mut y))
                    .map(|_| ());
                copies += e.take_reads();
                check(l, res, &y, m, &x, &format!("{what}: forward"));
            }
            _ => {
                // every pending report, last enqueued first
                while let Some((l, enq, r, y, m, x)) = pending.pop() {
                    let (res, c) = read(l, r);
                    copies += c;
                    errors += usize::from(res.is_err());
                    check(l, res, &y, m, &x, &format!("{what}: read of {enq}"));
                }
            }
        }
        assert!(copies <= 1, "{what}: {copies} copies back");
    }
    // (the draws reached what they are for: reports of non-finite input, many pending at once)
    assert!(
        errors >= 20 && most_pending >= 15,
        "{errors} errors, {most_pending} pending"
    );
    assert_eq!(e.report_ring_count(), 1);
}

#[test]
fn device_layer_edge_shapes() {
    let mut rng = Rng::new(6);
    let dynamic = ActivationQuant::Dynamic {
        scheme: Scheme::Asymmetric,
        granularity: Granularity::PerTensor,
    };
    // m = 0 (nothing to do), k = 1, n = 1, a tiled M just over a tile edge with K = 16·k + 1.
    for &(m, k, n) in &[(0, 4, 3), (1, 1, 1), (9, 1, 2), (130, 17, 2)] {
        check_layer(&mut rng, m, k, n, dynamic, true, false);
    }
}

// ---------------------------------------------------------------------------------------------
// Elementwise quantize / dequantize vs reference::quantize / dequantize.
// ---------------------------------------------------------------------------------------------

#[test]
fn quantize_and_dequantize_kernels_match_reference() {
    let mut rng = Rng::new(7);
    let e = SimExec::new();
    let (rows, cols) = (5, 37);
    let mut x = rng.f32s(rows * cols, 2.0);
    x[3] = f32::INFINITY;
    x[4] = f32::NEG_INFINITY;
    x[5] = 0.5 * 0.02; // a tie at scale 0.02
    let xd = e.upload(&x).unwrap();
    let conventions = [
        Convention::Int8rt,
        Convention::CompressedTensors,
        Convention::TorchAo {
            dtype: TorchDtype::QInt8,
            symmetric: true,
            reduce_range: false,
        },
        Convention::TorchAo {
            dtype: TorchDtype::QUInt8,
            symmetric: false,
            reduce_range: true,
        },
        Convention::PytorchQuantization {
            narrow_range: false,
            unsigned: false,
        },
    ];
    for conv in conventions {
        for axis in [Axis::Tensor, Axis::Row, Axis::Column] {
            let groups = match axis {
                Axis::Tensor => 1,
                Axis::Row => rows,
                Axis::Column => cols,
            };
            let params: Vec<QuantParams> = (0..groups)
                .map(|g| {
                    let lo = -1.0 - g as f32 * 0.1;
                    QuantParams::from_range(conv, lo, 2.0 + g as f32 * 0.05).unwrap()
                })
                .collect();
            let chan = |i: usize| match axis {
                Axis::Tensor => 0,
                Axis::Row => i / cols,
                Axis::Column => i % cols,
            };
            let want: Vec<i32> = (0..rows * cols)
                .map(|i| reference::quantize(x[i], &params[chan(i)]))
                .collect();
            let u8_out = params[0].qmin() >= 0;
            let q_host: Vec<i32> = if u8_out {
                let mut q = e.alloc::<u8>(rows * cols).unwrap();
                ops::quantize(&e, "t", &xd, rows, cols, axis, &params, DevQRef::U8(&mut q))
                    .unwrap();
                let mut h = vec![0u8; rows * cols];
                e.read(&q, &mut h).unwrap();
                let mut y = e.alloc::<f32>(rows * cols).unwrap();
                ops::dequantize(&e, DevQIn::U8(&q), rows, cols, axis, &params, &mut y).unwrap();
                let mut yh = vec![0f32; rows * cols];
                e.read(&y, &mut yh).unwrap();
                for i in 0..rows * cols {
                    assert_eq!(
                        yh[i].to_bits(),
                        reference::dequantize(h[i] as i32, &params[chan(i)]).to_bits(),
                        "{conv:?} {axis:?} {i}"
                    );
                }
                h.iter().map(|&v| v as i32).collect()
            } else {
                let mut q = e.alloc::<i8>(rows * cols).unwrap();
                ops::quantize(&e, "t", &xd, rows, cols, axis, &params, DevQRef::S8(&mut q))
                    .unwrap();
                let mut h = vec![0i8; rows * cols];
                e.read(&q, &mut h).unwrap();
                let mut y = e.alloc::<f32>(rows * cols).unwrap();
                ops::dequantize(&e, DevQIn::S8(&q), rows, cols, axis, &params, &mut y).unwrap();
                let mut yh = vec![0f32; rows * cols];
                e.read(&y, &mut yh).unwrap();
                for i in 0..rows * cols {
                    assert_eq!(
                        yh[i].to_bits(),
                        reference::dequantize(h[i] as i32, &params[chan(i)]).to_bits(),
                        "{conv:?} {axis:?} {i}"
                    );
                }
                h.iter().map(|&v| v as i32).collect()
            };
            assert_eq!(q_host, want, "{conv:?} {axis:?}");
        }
    }
    // NaN is an error naming the tensor, as QuantParams::quantize_to_i8.
    let mut xn = x.clone();
    xn[9] = f32::NAN;
    let xnd = e.upload(&xn).unwrap();
    let p = [QuantParams::symmetric(2.0).unwrap()];
    let mut q = e.alloc::<i8>(rows * cols).unwrap();
    let err = ops::quantize(
        &e,
        "acts",
        &xnd,
        rows,
        cols,
        Axis::Tensor,
        &p,
        DevQRef::S8(&mut q),
    )
    .unwrap_err();
    assert!(
        matches!(err, crate::Error::NonFinite { ref tensor, count: 1, first_index: 9 } if tensor == "acts"),
        "{err:?}"
    );
    // A range that does not fit the output type is refused before any launch.
    let pu = [QuantParams::asymmetric(-1.0, 1.0).unwrap()];
    assert!(ops::quantize(
        &e,
        "t",
        &xd,
        rows,
        cols,
        Axis::Tensor,
        &pu,
        DevQRef::S8(&mut q)
    )
    .is_err());
}

#[test]
fn status_buffer_starts_clear() {
    // The host reads `first` only when count > 0; CLEAR is what every launch starts from.
    assert_eq!(Status::CLEAR.count, 0);
    assert_eq!(Status::CLEAR.first, u64::MAX);
}

/// Values `x` in `(-lim, lim)` where multiplying by the reciprocal rounds differently from the
/// true division the contract requires (about 1 value in 500 000; found by search).
fn division_hazards(rng: &mut Rng, s: f32, lim: f32, want: usize) -> Vec<f32> {
    let inv = 1.0 / s;
    let mut v = Vec::new();
    for _ in 0..20_000_000 {
        let x = (rng.unit() * 2.0 - 1.0) * lim;
        if (x * inv).round_ties_even() != (x / s).round_ties_even() {
            v.push(x);
            if v.len() == want {
                break;
            }
        }
    }
    v
}

#[test]
fn dynamic_activation_quantization_matches_cpu_scales_and_integers() {
    // Many rows with distinct ranges (a scale computed as amax · (1/127) instead of amax / 127
    // differs for ~4% of them) and, in some rows, inputs where x · (1/s) and x / s round apart.
    let mut rng = Rng::new(8);
    let e = SimExec::new();
    let (m, k) = (160, 12);
    let mut x = vec![0f32; m * k];
    for r in 0..m {
        let amax = 0.01 + r as f32 * 0.0371;
        let row = &mut x[r * k..(r + 1) * k];
        for v in row.iter_mut() {
            *v = (rng.unit() * 2.0 - 1.0) * amax;
        }
        row[r % k] = if r % 2 == 0 { amax } else { -amax };
        if r % 16 == 3 {
            let s = reference::symmetric_scale(amax);
            for (j, h) in division_hazards(&mut rng, s, amax, 2)
                .into_iter()
                .enumerate()
            {
                row[(r + 1 + j) % k] = h;
            }
        }
    }
    let xd = e.upload(&x).unwrap();
    for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
        // Clear on entry, as a slot of a stream's report ring is (the middle one of three here:
        // the kernel reports at its offset and nowhere else).
        let mut status = e.upload(&[Status::CLEAR; 3]).unwrap();
        let dq = ops::quantize_activations(
            &e,
            &xd,
            m,
            k,
            ops::ActMode::Dynamic {
                scheme,
                per_row: true,
            },
            None,
            (&mut status, 1),
            None,
        )
        .unwrap();
        let mut words = [Status::default(); 3];
        e.read(&status, &mut words).unwrap();
        assert_eq!(
            words,
            [Status::CLEAR; 3],
            "{scheme:?}: finite input, clear words"
        );
        let mut scales = vec![0f32; m];
        e.read(&dq.scales, &mut scales).unwrap();
        let mut q = vec![0i32; m * dq.ldq];
        match &dq.q {
            ops::DevQ::S8(b) => {
                let mut h = vec![0i8; m * dq.ldq];
                e.read(b, &mut h).unwrap();
                q.iter_mut().zip(&h).for_each(|(o, &v)| *o = v as i32);
            }
            ops::DevQ::U8(b) => {
                let mut h = vec![0u8; m * dq.ldq];
                e.read(b, &mut h).unwrap();
                q.iter_mut().zip(&h).for_each(|(o, &v)| *o = v as i32);
            }
        }
        let mut zps = vec![0i32; m];
        if let Some(z) = &dq.zps {
            e.read(z, &mut zps).unwrap();
        }
        for r in 0..m {
            let row = &x[r * k..(r + 1) * k];
            let p = match scheme {
                Scheme::Symmetric => {
                    QuantParams::symmetric(row.iter().fold(0f32, |a, v| a.max(v.abs()))).unwrap()
                }
                Scheme::Asymmetric => {
                    let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
                    let hi = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    QuantParams::asymmetric(lo, hi).unwrap()
                }
            };
            assert_eq!(
                scales[r].to_bits(),
                p.scale().to_bits(),
                "{scheme:?} row {r} scale"
            );
            assert_eq!(zps[r], p.zero_point(), "{scheme:?} row {r} zero point");
            for j in 0..dq.ldq {
                let want = if j < k { p.quantize(row[j]) } else { 0 };
                assert_eq!(
                    q[r * dq.ldq + j],
                    want,
                    "{scheme:?} row {r} col {j} (x = {:?})",
                    row.get(j)
                );
            }
        }
    }
}

#[test]
fn kernels_are_race_free_under_tsan() {
    // The GEMM kernels and the activation quantizer built with -fsanitize=thread and run by a
    // small C++ driver: a missing barrier or a shared-memory race is a ThreadSanitizer report.
    let dir = std::path::Path::new(env!("OUT_DIR")).join("sim");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(format!("tsan_driver_{}", std::process::id()));
    let kdir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let build = sim::CxxBuild {
        flags: &["-fsanitize=thread", "-O1"],
        extra_sources: &[kdir.join("sim/tsan_driver.cpp")],
        link: &[],
        executable: true,
    };
    if let Err(msg) = sim::build_cxx(&exe, &build) {
        if std::env::var_os("CI").is_some() {
            panic!("building the ThreadSanitizer driver failed:\n{msg}");
        }
        eprintln!("ThreadSanitizer build unavailable here, test skipped:\n{msg}");
        return;
    }
    let run = std::process::Command::new(&exe)
        .env("TSAN_OPTIONS", "halt_on_error=1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&exe);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && String::from_utf8_lossy(&run.stdout).contains("tsan driver ok"),
        "ThreadSanitizer run failed:\n{stderr}"
    );
    assert!(!stderr.contains("ThreadSanitizer"), "{stderr}");
}

#[test]
fn simulated_warp_shuffles_follow_cuda_semantics() {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct ShflTestParams {
        out: u64,
        width: i32,
        delta: i32,
    }
    let value = |t: usize| 1000 * (t / 32) as u32 + 10 * (t % 32) as u32 + 1;
    for width in [32usize, 16, 8, 4] {
        for delta in [1usize, 3, 5, 16] {
            let mut out = vec![0u32; 64 * 4];
            let p = ShflTestParams {
                out: out.as_mut_ptr() as u64,
                width: width as i32,
                delta: delta as i32,
            };
            // SAFETY: `out` holds 64 threads × 4 results and outlives the (synchronous) launch.
            unsafe {
                sim::lib().launch_raw(
                    "sim_selftest_shfl",
                    [1, 1, 1],
                    [64, 1, 1],
                    0,
                    0,
                    bytemuck::bytes_of(&p),
                    false,
                )
            }
            .unwrap();
            for t in 0..64 {
                let (warp, lane) = (t / 32 * 32, t % 32);
                let seg = lane / width * width;
                // __shfl_sync: lane srcLane % width of the caller's segment.
                let idx = warp + seg + (lane * 3 + delta) % width;
                // __shfl_up_sync / __shfl_down_sync: own value when the source leaves the segment.
                let up = if lane - seg >= delta { t - delta } else { t };
                let down = if lane - seg + delta < width {
                    t + delta
                } else {
                    t
                };
                // __shfl_xor_sync: earlier segments are readable, later ones give the own value.
                let x = lane ^ delta;
                let xor = if x < seg + width { warp + x } else { t };
                let want = [value(idx), value(up), value(down), value(xor)];
                assert_eq!(
                    &out[t * 4..t * 4 + 4],
                    &want,
                    "width {width} delta {delta} thread {t}"
                );
            }
        }
    }
}

#[test]
fn simulated_barriers_complete_and_report_deadlock_and_divergence() {
    // sim_selftest_barriers (kernels/sim/selftest.cu): a warp shuffle then __syncthreads()
    // completes; a shuffle that waits for lanes held at __syncthreads() is a deadlock the fiber
    // scheduler reports as soon as no thread can run (not after the 30 s watchdog); a barrier
    // some threads wait at while the others exit is divergent. Each failure aborts the
    // simulation's process, so it runs in a child (this test binary, this test alone).
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct BarrierTestParams {
        out: u64,
        mode: i32,
        _pad: i32,
    }
    const CHILD: &str = "INT8RT_SIM_BARRIER_CHILD";
    const NAME: &str =
        "cuda::sim_tests::simulated_barriers_complete_and_report_deadlock_and_divergence";
    let launch = |mode: i32, out: &mut [u32; 64]| {
        let p = BarrierTestParams {
            out: out.as_mut_ptr() as u64,
            mode,
            _pad: 0,
        };
        // SAFETY: `out` holds the 64 threads' results and outlives the (synchronous) launch.
        unsafe {
            sim::lib().launch_raw(
                "sim_selftest_barriers",
                [1, 1, 1],
                [64, 1, 1],
                0,
                0,
                bytemuck::bytes_of(&p),
                false,
            )
        }
    };
    if let Ok(mode) = std::env::var(CHILD) {
        let r = launch(mode.parse().unwrap(), &mut [0; 64]);
        eprintln!("the launch returned: {r:?}");
        std::process::exit(0);
    }
    let mut out = [0u32; 64];
    launch(0, &mut out).unwrap();
    for (t, &v) in out.iter().enumerate() {
        assert_eq!(v as usize, t / 32 * 32 + (t + 1) % 32 + 1, "thread {t}");
    }
    for (mode, why) in [
        (1, "waits at a barrier no other thread can complete"),
        (2, "divergent barrier"),
    ] {
        let (ok, err) = super::sim_mma_tests::run_test_in_child(NAME, CHILD, &mode.to_string());
        assert!(!ok && err.contains(why), "mode {mode}: {err}");
    }
}

#[test]
fn simulated_clusters_multicast_arrive_remotely_and_refuse_ended_or_foreign_blocks() {
    // sim_selftest_cluster (kernels/sim/selftest.cu), clusters of 4 blocks along x: a tensor
    // box multicast by rank 0 lands (swizzled, zeros past the matrix) in exactly the blocks of
    // its mask, and once per instruction in the counts; remote arrivals from every block
    // complete each block's barrier; a remote arrival on a block that has ended, a multicast to
    // a rank outside the cluster and an arrival where the peer has no mbarrier each abort the
    // launch (in a child: this test binary, this test alone); a grid whose x is not a multiple
    // of the cluster is refused before it runs.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C, align(128))]
    struct ClusterTestParams {
        map: [u64; 16],
        out: u64,
        done: u64,
        c0: i32,
        c1: i32,
        box_rows: i32,
        mask: u32,
        mode: i32,
        pad: [[i32; 5]; 11],
    }
    const _: () = assert!(std::mem::size_of::<ClusterTestParams>() == 384);
    const CHILD: &str = "INT8RT_SIM_CLUSTER_CHILD";
    const NAME: &str =
        "cuda::sim_tests::simulated_clusters_multicast_arrive_remotely_and_refuse_ended_or_foreign_blocks";
    let (rows, cols, ld) = crate::cuda::TMA_PROBE_MATRIX;
    let src = crate::cuda::tma_probe_source();
    let (box_rows, c0, c1) = (13usize, 256i32, 60i32); // across the right edge and the last row
    let e = SimExec::new();
    let map = e
        .tensor_map(src.as_ptr() as u64, rows, cols, ld, box_rows)
        .unwrap();
    let launch =
        |mode: i32, mask: u32, grid_x: u32, threads: u32, out: &mut [u8], done: &mut [u32]| {
            let p = ClusterTestParams {
                map: map.bits,
                out: out.as_mut_ptr() as u64,
                done: done.as_mut_ptr() as u64,
                c0,
                c1,
                box_rows: box_rows as i32,
                mask,
                mode,
                pad: [[0; 5]; 11],
            };
            let smem = (1024 + 128 * box_rows + 64) as u32;
            // SAFETY: `out` holds grid_x boxes and `done` grid_x words, `src` the tensor map's
            // matrix; all outlive the (synchronous) launch.
            unsafe {
                sim::lib().launch_raw(
                    "sim_selftest_cluster",
                    [grid_x, 1, 1],
                    [threads, 1, 1],
                    smem,
                    0,
                    bytemuck::bytes_of(&p),
                    false,
                )
            }
        };
    if let Ok(mode) = std::env::var(CHILD) {
        let mut out = vec![0u8; 4 * 128 * box_rows];
        let r = launch(mode.parse().unwrap(), 0xf, 4, 1, &mut out, &mut [0; 4]);
        eprintln!("the launch returned: {r:?}");
        std::process::exit(0);
    }
    let want =
        crate::cuda::tma_box_expected(&src, (rows, cols, ld), box_rows, (c0 as i64, c1 as i64));
    for mask in [0xfu32, 0b0110, 0b0001] {
        let mut out = vec![0u8; 8 * 128 * box_rows];
        let mut done = [0u32; 8];
        let st = launch(0, mask, 8, 64, &mut out, &mut done).unwrap();
        assert_eq!(st.bulk_copies, 2, "one multicast per cluster: {st:?}");
        for b in 0..8 {
            let got = &out[b * 128 * box_rows..(b + 1) * 128 * box_rows];
            if mask >> (b % 4) & 1 == 1 {
                assert_eq!(got, &want[..], "mask {mask:#x}, block {b}");
            } else {
                assert!(
                    got.iter().all(|&v| v == 0),
                    "mask {mask:#x}: block {b} wrote a box"
                );
            }
            assert_eq!(done[b] as usize, 1 + b % 4, "mask {mask:#x}, block {b}");
        }
    }
    let r = launch(
        0,
        0xf,
        6,
        64,
        &mut vec![0u8; 6 * 128 * box_rows],
        &mut [0; 6],
    );
    assert!(
        matches!(&r, Err(crate::error::Error::Cuda { detail, .. }) if detail.contains("multiple of a cluster")),
        "{r:?}"
    );
    for (mode, why) in [
        (1, "after that block has ended"),
        (2, "rank 4 outside a cluster of 4"),
        (3, "no mbarrier.init at shared offset"),
    ] {
        let (ok, err) = super::sim_mma_tests::run_test_in_child(NAME, CHILD, &mode.to_string());
        assert!(!ok && err.contains(why), "mode {mode}: {err}");
    }
}

#[test]
fn overlapped_launch_is_asked_for_the_gemv_and_tma_tiles_alone_with_the_same_bits() {
    // `overlap` on a layer (the default): its GEMV (up to 32 rows on the simulated sm_90, 64 on
    // sm_80) and a forced TMA tile go through `launch_overlapped` (which the simulation refuses
    // for a kernel that does not wait for its predecessor), nothing else does — not the
    // activation quantization, not the other tiles, not dp4a; the bits are the CPU layer's
    // either way. (The GPU executor
    // then overlaps only on sm_90 and newer; the kernels' wait is checked in their SASS,
    // tests/kernels_static.rs.)
    let (n, k) = (40, 200);
    let mut r = Rng::new(21);
    let w = r.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    let tma = |tile, splits| GemmKernel::Mma(Some(super::ops::MmaConfig { tile, splits }));
    for (arch, m, kernel, want) in [
        (90, 3, GemmKernel::Auto, 1),
        (90, 32, GemmKernel::Auto, 1),
        (90, 33, GemmKernel::Auto, 0),
        (80, 64, GemmKernel::Auto, 1),
        (80, 65, GemmKernel::Auto, 0),
        (90, 3, GemmKernel::Dp4a, 0),
        (
            90,
            5,
            GemmKernel::MmaGemvVariant(super::ops::GemvVariant::Wide),
            1,
        ),
        (80, 17, GemmKernel::Auto, 1),
        // The TMA tiles (forced) overlap too; the cp.async tiles never do.
        (90, 3, tma(super::ops::MmaTile::Tma64x128, 1), 1),
        (90, 70, tma(super::ops::MmaTile::Tma128x128, 2), 1),
        (90, 40, tma(super::ops::MmaTile::Wgmma64x128, 1), 0),
    ] {
        let e = SimExec::with_arch(arch, 132);
        let mut dev = DevLinear::new(&e, &layer).unwrap();
        assert!(dev.overlap, "layers overlap their GEMV by default");
        dev.kernel = kernel;
        let x = r.f32s(m * k, 1.0);
        let mut cpu = vec![0f32; m * n];
        layer
            .forward(&ctx, &x, m, &mut OutBuf::F32(&mut cpu))
            .unwrap();
        for overlap in [false, true] {
            dev.overlap = overlap;
            let mut y = vec![f32::NAN; m * n];
            dev.forward_host(&e, &x, m, &mut OutBuf::F32(&mut y))
                .unwrap();
            assert!(
                cpu.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                "sm_{arch} m={m} {kernel:?} overlap={overlap}"
            );
            assert_eq!(
                e.take_overlapped(),
                if overlap { want } else { 0 },
                "sm_{arch} m={m} {kernel:?} overlap={overlap}"
            );
        }
    }
}

#[test]
fn tma_tiles_refuse_nan_input_and_store_nothing() {
    // A layer forced onto TMA tiles (launched overlapped, as layers launch them): NaN in the
    // input is `Err(NonFinite)` like on the CPU and the output keeps its contents — the kernel
    // reads the status only after its wait, then lets its copies in flight land and stores
    // nothing (with split-K too) — and the next clean forward gives the CPU's bits.
    let (n, k, m) = (150, 700, 9);
    let mut r = Rng::new(23);
    let w = r.f32s(n * k, 0.5);
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    let e = SimExec::new();
    // (and the clustered tiles: every block of a cluster leaves together once the copies to it
    // have landed, the 2 × 2 one with a padded second tile row)
    for (tile, splits) in [
        (super::ops::MmaTile::Tma64x128, 1),
        (super::ops::MmaTile::Tma128x256, 3),
        (super::ops::MmaTile::Tmc64x64M2N2, 2),
        (super::ops::MmaTile::Tmc64x64N4, 1),
    ] {
        let mut dev = DevLinear::new(&e, &layer).unwrap();
        dev.kernel = GemmKernel::Mma(Some(super::ops::MmaConfig { tile, splits }));
        let mut x = r.f32s(m * k, 1.0);
        x[3 * k + 5] = f32::NAN;
        let mut y = vec![7.5f32; m * n];
        let err = dev
            .forward_host(&e, &x, m, &mut OutBuf::F32(&mut y))
            .unwrap_err();
        let mut cpu = vec![0f32; m * n];
        let cpu_err = layer
            .forward(&ctx, &x, m, &mut OutBuf::F32(&mut cpu))
            .unwrap_err();
        assert_eq!(err.to_string(), cpu_err.to_string(), "{tile:?}");
        assert!(y.iter().all(|&v| v == 7.5), "{tile:?}: written despite NaN");
        x[3 * k + 5] = 0.25;
        layer
            .forward(&ctx, &x, m, &mut OutBuf::F32(&mut cpu))
            .unwrap();
        dev.forward_host(&e, &x, m, &mut OutBuf::F32(&mut y))
            .unwrap();
        assert!(
            cpu.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{tile:?} split {splits}"
        );
        assert!(e.take_overlapped() >= 2, "{tile:?}: launched overlapped");
        assert!(e.take_stats().bulk_copies > 0);
    }
}
