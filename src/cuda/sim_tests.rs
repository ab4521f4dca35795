//! cuda/sim_tests.rs — every kernel run in the host simulation (DESIGN.md §2) through the same
//! host wrappers the GPU uses (`cuda::ops`), against `reference.rs` and the CPU layer, bit for
//! bit, over small and odd shapes, every scheme and every output type. Runs in every CI run.

use half::{bf16, f16};

use super::exec::Exec;
use super::ops::{self, Axis, DevAct, DevBias, DevLinear, DevOut, DevQIn, DevQRef, GemmDev};
use super::params::Status;
use super::registry::KernelId;
use super::sim::{self, SimExec};
use crate::gemm::{
    ActScales, Activations, Bias, Context, GemmArgs, OutBuf, OutKind, OutQuant, Path,
};
use crate::nn::{ActivationQuant, LinearConfig, QuantLinear};
use crate::quant::{Convention, Granularity, QuantParams, Scheme, TorchDtype};
use crate::reference;

/// SplitMix64 (the integration tests' generator).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i32
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn f32s(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.unit() + self.unit() + self.unit() - 1.5) * sd * 2.0)
            .collect()
    }
}

#[test]
fn every_registered_kernel_runs_in_the_simulation() {
    let mut names = sim::lib().kernel_names();
    names.sort();
    let mut ids: Vec<String> = KernelId::ALL.iter().map(|k| k.name().to_string()).collect();
    ids.sort();
    assert_eq!(
        names, ids,
        "the simulation library and the registry list different kernels"
    );
}

/// Output kinds exercised for a GEMM.
fn out_kinds() -> Vec<OutKind> {
    vec![
        OutKind::I32,
        OutKind::F32,
        OutKind::F16,
        OutKind::Bf16,
        OutKind::I8(OutQuant::symmetric(0.37)),
        OutKind::I8(OutQuant {
            scale: 0.05,
            zero_point: -3,
            qmin: -128,
            qmax: 127,
        }),
    ]
}

/// Host output buffer pre-filled with a sentinel, and its device twin.
enum HostOut {
    I32(Vec<i32>),
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    I8(Vec<i8>, OutQuant),
}

impl HostOut {
    fn new(kind: OutKind, len: usize) -> Self {
        match kind {
            OutKind::I32 => HostOut::I32(vec![i32::MIN + 7; len]),
            OutKind::F32 => HostOut::F32(vec![f32::NAN; len]),
            OutKind::F16 => HostOut::F16(vec![f16::NAN; len]),
            OutKind::Bf16 => HostOut::Bf16(vec![bf16::NAN; len]),
            OutKind::I8(q) => HostOut::I8(vec![-101; len], q),
        }
    }
    fn as_buf(&mut self) -> OutBuf<'_> {
        match self {
            HostOut::I32(v) => OutBuf::I32(v),
            HostOut::F32(v) => OutBuf::F32(v),
            HostOut::F16(v) => OutBuf::F16(v),
            HostOut::Bf16(v) => OutBuf::Bf16(v),
            HostOut::I8(v, q) => OutBuf::I8(v, *q),
        }
    }
    /// Bits of every element, for exact comparison (NaN sentinels included).
    fn bits(&self) -> Vec<u32> {
        match self {
            HostOut::I32(v) => v.iter().map(|&x| x as u32).collect(),
            HostOut::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            HostOut::F16(v) => v.iter().map(|x| x.to_bits() as u32).collect(),
            HostOut::Bf16(v) => v.iter().map(|x| x.to_bits() as u32).collect(),
            HostOut::I8(v, _) => v.iter().map(|&x| x as u8 as u32).collect(),
        }
    }
}

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
        HostOut::I32(v) => go!(v, |d| DevOut::I32(d)),
        HostOut::F32(v) => go!(v, |d| DevOut::F32(d)),
        HostOut::F16(v) => go!(v, |d| DevOut::F16(d)),
        HostOut::Bf16(v) => go!(v, |d| DevOut::Bf16(d)),
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
enum ActCase {
    S8Tensor,
    U8Tensor,
    S8Rows,
    U8Rows,
}

#[derive(Clone, Copy, Debug)]
enum BiasCase {
    None,
    I32,
    F32,
}

/// One GEMM through `ops::gemm` in the simulation vs `reference::gemm`, for every output kind.
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
    let e = SimExec;
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
        .upload(&bytemuck::cast_slice::<i8, u8>(&pad(&xu8_as_i8, m, lda)).to_vec())
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
        };
        let path = with_dev_out(&e, &mut got, |o| ops::gemm(&e, &g, o)).unwrap();
        assert_eq!(path, Path::CudaDp4a);
        if let Some((i, a, b)) = first_diff(&got.bits(), &want.bits()) {
            panic!(
                "GEMM m={m} n={n} k={k} {act:?} {bias:?} aligned={aligned} extreme={extreme} {kind:?}: \
                 first mismatch at row {} col {}: simulated {a:#x}, reference {b:#x}",
                i / n.max(1),
                i % n.max(1)
            );
        }
    }
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
        for (i, act) in [
            ActCase::S8Tensor,
            ActCase::U8Tensor,
            ActCase::S8Rows,
            ActCase::U8Rows,
        ]
        .into_iter()
        .enumerate()
        {
            let bias = [BiasCase::None, BiasCase::I32, BiasCase::F32][(i + m) % 3];
            check_gemm(&mut rng, m, n, k, act, bias, true, false);
            check_gemm(&mut rng, m, n, k, act, bias, false, false);
        }
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
        for (i, act) in [
            ActCase::S8Tensor,
            ActCase::U8Tensor,
            ActCase::S8Rows,
            ActCase::U8Rows,
        ]
        .into_iter()
        .enumerate()
        {
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
