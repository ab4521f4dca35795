//! tests/common — shared helpers for the integration tests: a seeded generator (no dependency, so
//! every run sees the same data), data by range class, and the path list the machine supports.

#![allow(dead_code)]

use int8rt::gemm::Path;

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi]` (inclusive).
    pub fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i32
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    /// Approximately normal (sum of four uniforms), mean 0, standard deviation `sd`.
    pub fn normal(&mut self, sd: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum::<f32>() - 2.0;
        s * sd * 1.732
    }
    pub fn i8s(&mut self, n: usize, lo: i32, hi: i32) -> Vec<i8> {
        (0..n).map(|_| self.int(lo, hi) as i8).collect()
    }
    pub fn u8s(&mut self, n: usize, lo: i32, hi: i32) -> Vec<u8> {
        (0..n).map(|_| self.int(lo, hi) as u8).collect()
    }
    pub fn f32s(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(sd)).collect()
    }
}

/// Every CPU path this machine can run (the reference excluded). Under `INT8RT_REQUIRE_AVX2=1`
/// (set by CI) a missing AVX2 path is a failure, not a silent skip.
pub fn cpu_paths() -> Vec<Path> {
    let paths: Vec<Path> = int8rt::gemm::cpu::available_paths()
        .into_iter()
        .filter(|&p| p != Path::Reference)
        .collect();
    if std::env::var("INT8RT_REQUIRE_AVX2").as_deref() == Ok("1") {
        assert!(
            paths.contains(&Path::Avx2),
            "INT8RT_REQUIRE_AVX2=1 but the AVX2 path is not available: {:?}",
            Path::Avx2.cpu_availability()
        );
    }
    paths
}

use half::{bf16, f16};
use int8rt::gemm::{ActScales, Activations, Bias, Context, GemmArgs, OutBuf, OutKind, OutQuant};

/// Which activation integers a case uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum XType {
    S8,
    U8,
}

/// How test data is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Data {
    /// Uniform over the full range of each type (weights narrow `[-127, 127]`).
    Random,
    /// Every activation at an end of its range and weights at ±127, signs arranged so that
    /// partial sums grow as fast as possible (the saturation hazards of `vpmaddubsw`).
    Extreme,
    /// Weights in `[-128, 127]` (compressed-tensors checkpoints store −128).
    FullRangeWeights,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BiasKind {
    None,
    I32,
    F32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutSel {
    I32,
    F32,
    F16,
    Bf16,
    I8,
}

/// One configuration of the GEMM (everything except the shape).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub x: XType,
    pub per_row: bool,
    pub bias: BiasKind,
    pub out: OutSel,
    pub per_channel: bool,
}

/// Every valid configuration (a float bias cannot go with raw i32 output).
pub fn all_configs() -> Vec<Config> {
    let mut v = Vec::new();
    for x in [XType::S8, XType::U8] {
        for per_row in [false, true] {
            for bias in [BiasKind::None, BiasKind::I32, BiasKind::F32] {
                for out in [
                    OutSel::I32,
                    OutSel::F32,
                    OutSel::F16,
                    OutSel::Bf16,
                    OutSel::I8,
                ] {
                    if out == OutSel::I32 && bias == BiasKind::F32 {
                        continue;
                    }
                    let per_channel = (v.len() % 3) != 2;
                    v.push(Config {
                        x,
                        per_row,
                        bias,
                        out,
                        per_channel,
                    });
                }
            }
        }
    }
    v
}

/// Owned inputs of one GEMM case.
pub struct Case {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub cfg: Config,
    pub xs8: Vec<i8>,
    pub xu8: Vec<u8>,
    pub w: Vec<i8>,
    pub w_scales: Vec<f32>,
    pub act_scale: f32,
    pub zp: i32,
    pub row_scales: Vec<f32>,
    pub row_zps: Vec<i32>,
    pub bias_i32: Vec<i32>,
    pub bias_f32: Vec<f32>,
    pub oq: OutQuant,
}

impl Case {
    pub fn new(m: usize, n: usize, k: usize, cfg: Config, data: Data, rng: &mut Rng) -> Case {
        let (xs8, xu8) = match data {
            Data::Extreme => (
                (0..m * k)
                    .map(|i| {
                        if (i / k + i % k).is_multiple_of(3) {
                            127
                        } else {
                            -128
                        }
                    })
                    .collect(),
                (0..m * k)
                    .map(|i| {
                        if (i / k + i % k).is_multiple_of(5) {
                            0
                        } else {
                            255
                        }
                    })
                    .collect(),
            ),
            _ => (rng.i8s(m * k, -128, 127), rng.u8s(m * k, 0, 255)),
        };
        let w = match data {
            Data::Random => rng.i8s(n * k, -127, 127),
            Data::FullRangeWeights => rng.i8s(n * k, -128, 127),
            // Weights of each row share a sign, so a row of all-255 (or all −128) activations
            // produces the largest possible pair sums and accumulators.
            Data::Extreme => (0..n * k)
                .map(|i| if (i / k).is_multiple_of(2) { 127 } else { -127 })
                .collect(),
        };
        let w_scales = if cfg.per_channel {
            (0..n).map(|_| rng.uniform(1e-3, 2e-2)).collect()
        } else {
            vec![rng.uniform(1e-3, 2e-2)]
        };
        let zp = match (cfg.x, data) {
            (XType::S8, _) => 0,
            (XType::U8, Data::Extreme) => 255,
            (XType::U8, _) => rng.int(0, 255),
        };
        let row_zps = match cfg.x {
            XType::S8 => vec![0; m],
            XType::U8 => (0..m)
                .map(|i| {
                    if i % 4 == 0 {
                        0
                    } else if i % 4 == 1 {
                        255
                    } else {
                        rng.int(0, 255)
                    }
                })
                .collect(),
        };
        Case {
            m,
            n,
            k,
            cfg,
            xs8,
            xu8,
            w,
            w_scales,
            act_scale: rng.uniform(1e-3, 5e-2),
            zp,
            row_scales: (0..m).map(|_| rng.uniform(1e-3, 5e-2)).collect(),
            row_zps,
            bias_i32: (0..n).map(|_| rng.int(-100_000, 100_000)).collect(),
            bias_f32: (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect(),
            oq: OutQuant {
                scale: rng.uniform(0.02, 0.5),
                zero_point: rng.int(-20, 20),
                qmin: -127,
                qmax: 127,
            },
        }
    }

    pub fn args(&self) -> GemmArgs<'_> {
        GemmArgs {
            m: self.m,
            n: self.n,
            k: self.k,
            x: match self.cfg.x {
                XType::S8 => Activations::S8(&self.xs8),
                XType::U8 => Activations::U8(&self.xu8),
            },
            act: if self.cfg.per_row {
                ActScales::PerRow {
                    scales: &self.row_scales,
                    zero_points: (self.cfg.x == XType::U8).then_some(&self.row_zps[..]),
                }
            } else {
                ActScales::PerTensor {
                    scale: self.act_scale,
                    zero_point: self.zp,
                }
            },
            w: &self.w,
            w_scales: &self.w_scales,
            bias: match self.cfg.bias {
                BiasKind::None => Bias::None,
                BiasKind::I32 => Bias::I32(&self.bias_i32),
                BiasKind::F32 => Bias::F32(&self.bias_f32),
            },
        }
    }

    /// Run `f` with an output buffer of the case's kind pre-filled with a sentinel; return the
    /// output's bit patterns.
    pub fn run_bits(&self, f: impl FnOnce(&mut OutBuf<'_>)) -> Vec<u32> {
        let len = self.m * self.n;
        match self.cfg.out {
            OutSel::I32 => {
                let mut y = vec![0x5a5a_5a5a_i32; len];
                f(&mut OutBuf::I32(&mut y));
                y.iter().map(|&v| v as u32).collect()
            }
            OutSel::F32 => {
                let mut y = vec![f32::from_bits(0x7fc0_dead); len];
                f(&mut OutBuf::F32(&mut y));
                y.iter().map(|v| v.to_bits()).collect()
            }
            OutSel::F16 => {
                let mut y = vec![f16::from_bits(0x7e55); len];
                f(&mut OutBuf::F16(&mut y));
                y.iter().map(|v| v.to_bits() as u32).collect()
            }
            OutSel::Bf16 => {
                let mut y = vec![bf16::from_bits(0x7fd5); len];
                f(&mut OutBuf::Bf16(&mut y));
                y.iter().map(|v| v.to_bits() as u32).collect()
            }
            OutSel::I8 => {
                let mut y = vec![0x55_i8; len];
                f(&mut OutBuf::I8(&mut y, self.oq));
                y.iter().map(|&v| v as u8 as u32).collect()
            }
        }
    }

    pub fn out_kind(&self) -> OutKind {
        match self.cfg.out {
            OutSel::I32 => OutKind::I32,
            OutSel::F32 => OutKind::F32,
            OutSel::F16 => OutKind::F16,
            OutSel::Bf16 => OutKind::Bf16,
            OutSel::I8 => OutKind::I8(self.oq),
        }
    }

    /// The reference result.
    pub fn expected(&self) -> Vec<u32> {
        self.run_bits(|out| int8rt::reference::gemm(&self.args(), out).expect("reference"))
    }

    /// Compare `path` (under `ctx`) with the reference; panic with the first mismatch.
    pub fn check_path(&self, ctx: &Context, want: &[u32], what: &str) {
        let mut ran = None;
        let got = self.run_bits(|out| {
            ran = Some(int8rt::gemm::gemm(ctx, &self.args(), out).expect("gemm"));
        });
        assert_eq!(ran, ctx.forced_path(), "{what}: a different path ran");
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
            panic!(
                "{what}: {}x{}x{} {:?}: first mismatch at row {} col {}: got {:#x}, want {:#x} ({} of {} differ)",
                self.m,
                self.n,
                self.k,
                self.cfg,
                i / self.n,
                i % self.n,
                got[i],
                want[i],
                got.iter().zip(want).filter(|(a, b)| a != b).count(),
                want.len()
            );
        }
    }
}

/// Check a case on every CPU path: one thread, two on rayon's pool, two on the spinning pool.
pub fn check_all_paths(case: &Case, label: &str) {
    let want = case.expected();
    for p in cpu_paths() {
        for (threads, spin) in [(1, false), (2, false), (2, true)] {
            let mut ctx = Context::new().with_threads(threads);
            if spin {
                ctx = ctx.with_spin(std::time::Duration::from_micros(200));
            }
            let ctx = ctx.with_path(p);
            case.check_path(
                &ctx,
                &want,
                &format!("{label} {p:?} threads={threads} spin={spin}"),
            );
        }
    }
}
