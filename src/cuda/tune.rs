//! cuda/tune.rs — the GEMM kernel choice measured on the GPU at hand, per layer shape and
//! activation row count: [`GemmTuning`]. Sits beside the static dispatch of `cuda::ops` (the
//! `GemmKernel::Auto` rules, tuned on one H200): `CudaWeights::tune` / `CudaQuantLinear::tune`
//! time every kernel that can run the layer's shape (the GEMV and its variants, every tile ×
//! split-K factor, the `wgmma` tiles on sm_90, dp4a for few rows), each first checked to give
//! `Auto`'s bits on this GPU (and `Auto` against the host on three rows), and keep the fastest
//! per row count; `Auto` then follows that choice for the layer. A tuning is plain data
//! (`to_text` / `from_text`), so a server measures once and loads the result at start-up.
//!
//! Flow: `candidates` (pure) → `tune` (generic over the executor: verify, time, choose; the
//! simulation runs it in tests with a scripted clock) → `GemmTuning::kernel_for` at each call.
//! The GPU's clock (`event_clock`: CUDA events around single calls, L2 flushed before each) and
//! `tune_on_gpu` are the `cuda` feature's.

use std::fmt;

use super::exec::Exec;
use super::ops::{
    self, DevAct, DevBias, DevOut, GemmDev, GemmKernel, GemvVariant, MmaConfig, MmaTile,
};
use crate::error::{Error, Result};

/// How [`CudaWeights::tune`](crate::cuda::CudaWeights::tune) measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TuneOptions {
    /// Timed calls per candidate (the median counts). Default 20.
    pub reps: usize,
    /// Untimed calls before them. Default 3.
    pub warmup: usize,
    /// Evict the L2 cache before every timed call (write twice its size), so the weights come
    /// from memory as they do in a model whose other layers ran in between. Default `true`;
    /// `false` times back-to-back calls of one layer.
    pub flush_l2: bool,
    /// A candidate replaces `Auto`'s own choice only when at least this fraction faster
    /// (noise guard). Default 0.03.
    pub min_gain: f64,
    /// Also try the kernels that have not yet run on a GPU ([`GemmKernel::ran_on_gpu_for`]:
    /// today the tensor-core kernels' sm_75 build on a Turing GPU; a kernel added later starts
    /// there until a GPU run passes it). A wrong result is caught and rejected like any other,
    /// but a kernel that faults leaves the process's CUDA context unusable. Default `false`.
    pub include_unproven: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            reps: 20,
            warmup: 3,
            flush_l2: true,
            min_gain: 0.03,
            include_unproven: false,
        }
    }
}

/// One row bucket of a [`GemmTuning`]: calls with up to `m` activation rows (and more than the
/// previous bucket's) run `kernel`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TunedKernel {
    /// The row count it was measured at.
    pub m: usize,
    /// The choice ([`GemmKernel::Auto`]: the static dispatch was fastest).
    pub kernel: GemmKernel,
    /// Median seconds per call of `kernel`, and of `Auto`'s own choice, at `m` rows.
    pub seconds: f64,
    pub auto_seconds: f64,
}

/// A measured kernel choice for one weight shape `[n, k]` on one GPU model, per activation row
/// count. Applied with `set_tuning`; [`GemmKernel::Auto`] then runs, for a call of `m` rows, the
/// entry of the smallest tuned row count ≥ `m`, and its static choice above the largest.
/// Every kernel gives the same bits (DESIGN.md §1), so a tuning changes speed only.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmTuning {
    device: String,
    arch: u32,
    n: usize,
    k: usize,
    entries: Vec<TunedKernel>,
}

/// What happened to one candidate of a tuning run.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Median seconds per call.
    Timed(f64),
    /// Not timed: it failed to run, or gave other bits than `Auto` on this GPU (a defect to
    /// report; it is never chosen).
    Rejected(String),
}

/// Every candidate a tuning run tried, by row count, and the resulting [`GemmTuning`].
#[derive(Clone, Debug)]
pub struct TuneReport {
    pub tuning: GemmTuning,
    pub candidates: Vec<(usize, GemmKernel, Outcome)>,
}

impl TuneReport {
    /// The candidates that were rejected, with the reason.
    pub fn rejected(&self) -> impl Iterator<Item = (usize, GemmKernel, &str)> + '_ {
        self.candidates.iter().filter_map(|(m, k, o)| match o {
            Outcome::Rejected(r) => Some((*m, *k, r.as_str())),
            Outcome::Timed(_) => None,
        })
    }
}

const MAGIC: &str = "int8rt-gemm-tuning 1";

impl GemmTuning {
    /// The GPU model it was measured on (`CudaDevice::name`).
    pub fn device(&self) -> &str {
        &self.device
    }
    /// Its compute capability, `major · 10 + minor`.
    pub fn arch(&self) -> u32 {
        self.arch
    }
    /// The weight shape `[n, k]`.
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }
    /// The file name `int8rt tune` writes this tuning under: `<n>x<k>.tuning`.
    pub fn file_name(&self) -> String {
        format!("{}x{}.tuning", self.n, self.k)
    }
    /// The row buckets, by increasing `m`.
    pub fn entries(&self) -> &[TunedKernel] {
        &self.entries
    }
    /// The kernel for a call of `m` rows: the entry of the smallest tuned row count ≥ `m`, or
    /// `None` above the largest (the static dispatch decides).
    pub fn kernel_for(&self, m: usize) -> Option<GemmKernel> {
        self.entries.iter().find(|e| e.m >= m).map(|e| e.kernel)
    }

    /// Whether this tuning may be applied to weights `[n, k]` on `device` (compute capability
    /// `arch`): the same shape, GPU model and architecture, and every kernel able to run there.
    pub(crate) fn check_applies(&self, device: &str, arch: u32, n: usize, k: usize) -> Result<()> {
        let refuse = |detail: String| Err(Error::param("tuning", detail));
        if (self.n, self.k) != (n, k) {
            return refuse(format!(
                "measured for weights [{}, {}], these are [{n}, {k}]",
                self.n, self.k
            ));
        }
        if self.device != device || self.arch != arch {
            return refuse(format!(
                "measured on {} (sm_{}), this GPU is {device} (sm_{arch})",
                self.device, self.arch
            ));
        }
        for e in &self.entries {
            if let Some(why) = ops::arch_refusal(e.kernel, arch) {
                return refuse(format!("{} at {} rows: {why}", e.kernel, e.m));
            }
        }
        Ok(())
    }

    /// The tuning as text: a header line, `device`, `arch` and `shape` lines, then one line per
    /// row bucket (`m <rows> <kernel> <seconds> <auto seconds>`, kernels as
    /// [`GemmKernel`]'s `Display` writes them).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{MAGIC}\ndevice {}\narch {}\nshape {} {}\n",
            self.device, self.arch, self.n, self.k
        );
        for e in &self.entries {
            s += &format!(
                "m {} {} {:e} {:e}\n",
                e.m, e.kernel, e.seconds, e.auto_seconds
            );
        }
        s
    }

    /// Parse [`GemmTuning::to_text`]'s format; `Err(Format)` naming the line otherwise.
    pub fn from_text(text: &str) -> Result<GemmTuning> {
        let bad = |line: usize, detail: String| Error::Format {
            file: "GEMM tuning".into(),
            detail: format!("line {line}: {detail}"),
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        match lines.next() {
            Some((_, MAGIC)) => {}
            other => {
                return Err(bad(
                    1,
                    format!("expected `{MAGIC}`, found {:?}", other.map(|(_, l)| l)),
                ))
            }
        }
        let mut field = |name: &str| -> Result<(usize, String)> {
            match lines.next() {
                Some((i, l)) => match l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) {
                    Some(v) => Ok((i, v.to_string())),
                    None => Err(bad(i, format!("expected `{name} …`, found `{l}`"))),
                },
                None => Err(bad(0, format!("missing `{name}` line"))),
            }
        };
        let (_, device) = field("device")?;
        let (i, arch) = field("arch")?;
        let arch = arch
            .parse::<u32>()
            .map_err(|_| bad(i, format!("arch `{arch}`")))?;
        let (i, shape) = field("shape")?;
        let dims: Vec<usize> = shape
            .split_whitespace()
            .map(|d| d.parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(i, format!("shape `{shape}`")))?;
        let [n, k] = dims[..] else {
            return Err(bad(i, format!("shape `{shape}`: want `n k`")));
        };
        let mut entries: Vec<TunedKernel> = Vec::new();
        for (i, l) in lines {
            if l.is_empty() {
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            let [tag, m, kernel, secs, auto_secs] = f[..] else {
                return Err(bad(i, format!("`{l}`: want `m <rows> <kernel> <s> <s>`")));
            };
            let num = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
            let entry = match (tag, m.parse::<usize>(), kernel.parse::<GemmKernel>()) {
                (_, _, Err(e)) => return Err(bad(i, e)),
                ("m", Ok(m), Ok(kernel)) if m > 0 => TunedKernel {
                    m,
                    kernel,
                    seconds: num(secs).ok_or_else(|| bad(i, format!("seconds `{secs}`")))?,
                    auto_seconds: num(auto_secs)
                        .ok_or_else(|| bad(i, format!("seconds `{auto_secs}`")))?,
                },
                _ => return Err(bad(i, format!("`{l}`: want `m <rows ≥ 1> …`"))),
            };
            if entries.last().is_some_and(|p| p.m >= entry.m) {
                return Err(bad(i, "row counts must increase".into()));
            }
            entries.push(entry);
        }
        Ok(GemmTuning {
            device,
            arch,
            n,
            k,
            entries,
        })
    }
}

/// `Auto` (or `kernel` itself when forced) resolved through a layer's tuning for `m` rows.
pub(crate) fn resolve(kernel: GemmKernel, tuning: Option<&GemmTuning>, m: usize) -> GemmKernel {
    match (kernel, tuning) {
        (GemmKernel::Auto, Some(t)) => t.kernel_for(m).unwrap_or(GemmKernel::Auto),
        _ => kernel,
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels as text: `auto`, `dp4a`, `dp4a:gemv16`, `dp4a:warp-per-row`, `mma`,
// `mma:<tile>:<splits>`, `gemv`, `gemv:narrow`, `gemv:wide`, `gemv:bulk` (tiles by
// `MmaTile::label`).
// ---------------------------------------------------------------------------------------------

impl fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GemmKernel::Auto => f.write_str("auto"),
            GemmKernel::Dp4a => f.write_str("dp4a"),
            GemmKernel::Dp4aGemv16 => f.write_str("dp4a:gemv16"),
            GemmKernel::Dp4aWarpPerRow => f.write_str("dp4a:warp-per-row"),
            GemmKernel::Mma(None) => f.write_str("mma"),
            GemmKernel::Mma(Some(c)) => write!(f, "mma:{}:{}", c.tile.label(), c.splits),
            GemmKernel::MmaGemv => f.write_str("gemv"),
            GemmKernel::MmaGemvVariant(GemvVariant::Narrow) => f.write_str("gemv:narrow"),
            GemmKernel::MmaGemvVariant(GemvVariant::Wide) => f.write_str("gemv:wide"),
            GemmKernel::MmaGemvVariant(GemvVariant::Bulk) => f.write_str("gemv:bulk"),
            GemmKernel::MmaGemvVariant(GemvVariant::Prefetch) => f.write_str("gemv:prefetch"),
        }
    }
}

impl std::str::FromStr for GemmKernel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "auto" => GemmKernel::Auto,
            "dp4a" => GemmKernel::Dp4a,
            "dp4a:gemv16" => GemmKernel::Dp4aGemv16,
            "dp4a:warp-per-row" => GemmKernel::Dp4aWarpPerRow,
            "mma" => GemmKernel::Mma(None),
            "gemv" => GemmKernel::MmaGemv,
            "gemv:narrow" => GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
            "gemv:wide" => GemmKernel::MmaGemvVariant(GemvVariant::Wide),
            "gemv:bulk" => GemmKernel::MmaGemvVariant(GemvVariant::Bulk),
            "gemv:prefetch" => GemmKernel::MmaGemvVariant(GemvVariant::Prefetch),
            _ => {
                let mut p = s.split(':');
                let (Some("mma"), Some(tile), Some(splits), None) =
                    (p.next(), p.next(), p.next(), p.next())
                else {
                    return Err(format!(
                        "unknown GEMM kernel `{s}` (auto, dp4a, dp4a:gemv16, dp4a:warp-per-row, mma, \
                         mma:<tile>:<splits>, gemv, gemv:narrow, gemv:wide, gemv:bulk)"
                    ));
                };
                let tile = MmaTile::ALL
                    .into_iter()
                    .find(|t| t.label() == tile)
                    .ok_or_else(|| format!("unknown tile `{tile}` in `{s}`"))?;
                let splits = splits
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        format!("split-K factor `{splits}` in `{s}` (an integer ≥ 1)")
                    })?;
                GemmKernel::Mma(Some(MmaConfig { tile, splits }))
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement.
// ---------------------------------------------------------------------------------------------

/// Split-K factors a tuning tries.
const SPLITS: [u32; 4] = [1, 2, 4, 8];

/// The kernels worth timing for `m × [n, k]` on compute capability `arch`, `Auto` first: dp4a
/// (its default, the 16-row GEMV on the layer's aligned rows, and the warp-per-row GEMV) up to
/// 8 rows; from sm_75 the tensor-core GEMV up to 128 rows, its narrow
/// and wide variants up to 8 and its bulk-copy one (sm_90+) up to 128, the weight-streaming
/// tiles at 16 … 256 rows, the other tiles whose row count does not exceed `m` rounded up to a
/// power of two (at least 16) — the 64-row TMA tiles at any `m`, a clustered tile once `m`
/// fills more than all but one of its cluster's tile rows — and the `wgmma` tiles (the
/// TMA-fed ones included) on sm_90 alone — each at split-K 1, 2, 4, 8 while every split keeps
/// two k tiles; without `unproven`, only kernels that have run on a GPU of that architecture's
/// build ([`GemmKernel::ran_on_gpu_for`]: on sm_75, dp4a alone).
pub(crate) fn candidates(m: usize, k: usize, arch: u32, unproven: bool) -> Vec<GemmKernel> {
    let mut v = all_candidates(m, k, arch);
    v.retain(|c| unproven || c.ran_on_gpu_for(arch));
    v
}

fn all_candidates(m: usize, k: usize, arch: u32) -> Vec<GemmKernel> {
    let mut v = vec![GemmKernel::Auto];
    if m <= 8 {
        // (`Dp4a` runs the 16-row GEMV on the layer's aligned rows, so `Dp4aGemv16` would repeat
        // it — but for one row of a wide layer, where `Dp4a` takes the narrow block that measured
        // faster on the H200)
        v.push(GemmKernel::Dp4a);
        v.push(GemmKernel::Dp4aWarpPerRow);
    }
    if ops::arch_refusal(GemmKernel::MmaGemv, arch).is_some() {
        return v;
    }
    if m <= 128 {
        v.push(GemmKernel::MmaGemv);
    }
    if m <= 8 {
        v.push(GemmKernel::MmaGemvVariant(GemvVariant::Narrow));
        v.push(GemmKernel::MmaGemvVariant(GemvVariant::Wide));
    }
    for variant in [GemvVariant::Bulk, GemvVariant::Prefetch] {
        let kernel = GemmKernel::MmaGemvVariant(variant);
        if m <= 128 && ops::arch_refusal(kernel, arch).is_none() {
            v.push(kernel);
        }
    }
    let rows = m.next_power_of_two().max(16);
    for tile in MmaTile::ALL {
        // (the TMA tiles at any row count: X's rows past M arrive as zeros without a
        // guard, and their tensor work, 64 rows at least, hides under the weight stream)
        // (a tile whose clusters span CM tile rows only once M fills more than CM − 1 of them:
        // below that a cluster's second row is padding)
        let useful = if tile.is_stream() {
            (16..=256).contains(&m)
        } else {
            (tile.bm() <= rows || (tile.is_tma() && tile.bm() == 64)) && tile.clusters_filled_by(m)
        };
        let kt = k.div_ceil(tile.bk());
        for splits in SPLITS {
            let kernel = GemmKernel::Mma(Some(MmaConfig { tile, splits }));
            if useful
                && (splits == 1 || splits as usize * 2 <= kt)
                && ops::arch_refusal(kernel, arch).is_none()
            {
                v.push(kernel);
            }
        }
    }
    v
}

/// The weights a tuning runs on (a layer's or a `CudaWeights`' own buffers).
pub(crate) struct TuneWeights<'a, E: Exec> {
    pub device: &'a str,
    pub n: usize,
    pub k: usize,
    pub ldb: usize,
    pub w: &'a E::Buf<i8>,
    pub wsum: &'a E::Buf<i32>,
    pub w_scale: &'a E::Buf<f32>,
    pub scratch: &'a ops::ScratchCache<E>,
}

/// A clock: the median seconds per call of the work `call` enqueues, over `opts.reps` calls
/// after `opts.warmup`.
pub(crate) type Clock<'c> =
    dyn FnMut(&mut dyn FnMut() -> Result<()>, &TuneOptions) -> Result<f64> + 'c;

/// Measure every candidate at each row count of `rows` on the weights `w` and choose. `Auto`'s
/// i32 output (corrected accumulators, no bias) is checked against the host on three rows (an
/// error if it differs: the default path is wrong on this GPU). Before it is timed, a candidate
/// must reproduce `Auto`'s output bit for bit, for `s8` activations and for `u8` ones (`x + 128`, zero point 128: the same
/// products, so the same result); the output is poisoned before each run, so a kernel that
/// leaves elements unwritten fails too. A candidate that fails to launch or differs is
/// rejected and reported. Synthetic activations: a fixed pseudo-random sequence in [−127, 127].
pub(crate) fn tune<E: Exec>(
    e: &E,
    w: &TuneWeights<'_, E>,
    rows: &[usize],
    opts: &TuneOptions,
    clock: &mut Clock<'_>,
) -> Result<TuneReport> {
    if rows.is_empty() || rows.contains(&0) {
        return Err(Error::param(
            "tuning rows",
            "a non-empty list of row counts ≥ 1",
        ));
    }
    if opts.reps == 0 || !(0.0..1.0).contains(&opts.min_gain) {
        return Err(Error::param(
            "tune options",
            format!(
                "reps ≥ 1 and min_gain in [0, 1) (got {} and {})",
                opts.reps, opts.min_gain
            ),
        ));
    }
    let mut rows = rows.to_vec();
    rows.sort_unstable();
    rows.dedup();
    let (n, k) = (w.n, w.k);
    let lda = ops::padded_k(k);
    let one = e.upload(&[1.0f32])?;
    let zp128 = e.upload(&[128i32])?;
    let mut entries = Vec::new();
    let mut report = Vec::new();
    // The weights on the host, read back once (for the check of the default path).
    let mut host_w = vec![0i8; n * w.ldb];
    e.read(w.w, &mut host_w)?;
    for &m in &rows {
        let len = crate::error::checked_len("tuning activations", m, lda)?;
        let mut s = 0x2545_f491_4f6c_dd1d_u64 ^ m as u64;
        let xs: Vec<i8> = (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (((s >> 33) % 255) as i32 - 127) as i8
            })
            .collect();
        let xu: Vec<u8> = xs.iter().map(|&v| (v as i16 + 128) as u8).collect();
        let host_x = xs;
        let (xs, xu) = (e.upload(&host_x)?, e.upload(&xu)?);
        let yl = crate::error::checked_len("tuning output", m, n)?;
        let poison = vec![0x5eed_f00d_u32 as i32; yl];
        let mut y = e.upload(&poison)?;

        let gemm_dev = |kernel: GemmKernel, u8_act: bool| GemmDev {
            m,
            n,
            k,
            x: if u8_act {
                DevAct::U8(&xu)
            } else {
                DevAct::S8(&xs)
            },
            lda,
            w: w.w,
            ldb: w.ldb,
            wsum: w.wsum,
            w_scale: w.w_scale,
            act_scale: &one,
            per_row: false,
            act_zp: if u8_act { Some(&zp128) } else { None },
            bias: DevBias::None,
            status: None,
            kernel,
            overlap: false,
        };
        // The reference bits: Auto's, s8.
        ops::gemm(
            e,
            &gemm_dev(GemmKernel::Auto, false),
            &mut DevOut::I32(&mut y),
            w.scratch,
        )?;
        let mut want = vec![0i32; yl];
        e.read(&y, &mut want)?;
        // ... themselves checked against the host on three rows: the tuning doubles as a check
        // of the default path on this GPU.
        let rows_x = HostRows {
            x: &host_x,
            lda,
            w: &host_w,
            ldb: w.ldb,
            n,
            k,
        };
        if let Some(diff) = rows_x.first_difference(&want, [0, m / 2, m - 1]) {
            return Err(Error::Cuda {
                context: format!("tuning at {m} rows: the default kernel"),
                detail: format!("{diff}: the default path is wrong on this GPU (please report)"),
            });
        }

        let mut timed: Vec<(GemmKernel, f64)> = Vec::new();
        for kernel in candidates(m, k, e.arch(), opts.include_unproven) {
            let verify = || -> Result<Option<String>> {
                for u8_act in [false, true] {
                    let mut y = e.upload(&poison)?;
                    ops::gemm(
                        e,
                        &gemm_dev(kernel, u8_act),
                        &mut DevOut::I32(&mut y),
                        w.scratch,
                    )?;
                    let mut got = vec![0i32; yl];
                    e.read(&y, &mut got)?;
                    if let Some(diff) = first_difference(&want, &got, n) {
                        let act = if u8_act { "u8" } else { "s8" };
                        return Ok(Some(format!("{act} activations: {diff}")));
                    }
                }
                Ok(None)
            };
            let outcome = match verify() {
                Err(err) => Outcome::Rejected(format!("did not run: {err}")),
                Ok(Some(diff)) => Outcome::Rejected(format!("wrong bits: {diff}")),
                Ok(None) => {
                    let g = gemm_dev(kernel, false);
                    let mut call =
                        || ops::gemm(e, &g, &mut DevOut::I32(&mut y), w.scratch).map(|_| ());
                    let t = clock(&mut call, opts)?;
                    timed.push((kernel, t));
                    Outcome::Timed(t)
                }
            };
            report.push((m, kernel, outcome));
        }
        if let Some((_, _, Outcome::Rejected(why))) =
            report.iter().find(|c| c.0 == m && c.1 == GemmKernel::Auto)
        {
            // Auto's u8 run differs from its s8 run, or it cannot run at all: nothing to tune
            // against (and a defect to report).
            return Err(Error::Cuda {
                context: format!("tuning at {m} rows: the default kernel"),
                detail: why.clone(),
            });
        }
        entries.push(choose(m, &timed, opts.min_gain)?);
    }
    Ok(TuneReport {
        tuning: GemmTuning {
            device: w.device.to_string(),
            arch: e.arch(),
            n,
            k,
            entries,
        },
        candidates: report,
    })
}

/// Host copies of a tuning's operands: `x` rows of `lda`, `w` rows of `ldb`, `k` used of each.
struct HostRows<'a> {
    x: &'a [i8],
    lda: usize,
    w: &'a [i8],
    ldb: usize,
    n: usize,
    k: usize,
}

impl HostRows<'_> {
    /// Where `y` (`[m, n]` i32 products, no zero points or bias) first differs from the host's
    /// products on rows `rows`, as text; `None` when they agree.
    fn first_difference(&self, y: &[i32], rows: [usize; 3]) -> Option<String> {
        for r in rows {
            let xr = &self.x[r * self.lda..r * self.lda + self.k];
            for j in 0..self.n {
                let wr = &self.w[j * self.ldb..j * self.ldb + self.k];
                let dot: i64 = xr.iter().zip(wr).map(|(&a, &b)| a as i64 * b as i64).sum();
                if dot != y[r * self.n + j] as i64 {
                    return Some(format!(
                        "Y[{r}, {j}] = {} where the host computes {dot}",
                        y[r * self.n + j]
                    ));
                }
            }
        }
        None
    }
}

/// Where `got` first differs from `want` (both `[m, n]`), as text; `None` when equal.
pub(crate) fn first_difference(want: &[i32], got: &[i32], n: usize) -> Option<String> {
    if want.len() != got.len() {
        return Some(format!(
            "{} elements where auto gives {}",
            got.len(),
            want.len()
        ));
    }
    let i = want.iter().zip(got).position(|(a, b)| a != b)?;
    Some(format!(
        "Y[{}, {}] = {} where auto gives {}",
        i / n.max(1),
        i % n.max(1),
        got[i],
        want[i]
    ))
}

/// The entry for `m` rows from the timed candidates (`Auto` first): the fastest, unless it
/// beats `Auto` by less than `min_gain`.
fn choose(m: usize, timed: &[(GemmKernel, f64)], min_gain: f64) -> Result<TunedKernel> {
    let auto = match timed.first() {
        Some(&(GemmKernel::Auto, t)) => t,
        _ => {
            return Err(Error::Cuda {
                context: format!("tuning at {m} rows"),
                detail: "the default kernel could not be timed".into(),
            })
        }
    };
    let (kernel, seconds) = timed
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, t)| t < auto * (1.0 - min_gain))
        .unwrap_or((GemmKernel::Auto, auto));
    Ok(TunedKernel {
        m,
        kernel,
        seconds,
        auto_seconds: auto,
    })
}

impl<E: Exec> ops::DevLinear<E> {
    /// This layer's weights as a tuning runs on them.
    pub(crate) fn tune_weights<'a>(&'a self, device: &'a str) -> TuneWeights<'a, E> {
        TuneWeights {
            device,
            n: self.n,
            k: self.k,
            ldb: self.ldb,
            w: &self.w,
            wsum: &self.wsum,
            w_scale: &self.w_scale,
            scratch: &self.scratch,
        }
    }
}

/// [`tune`] on a GPU stream, timed by [`event_clock`] (`CudaWeights::tune`,
/// `CudaQuantLinear::tune`).
#[cfg(feature = "cuda")]
pub(crate) fn tune_on_gpu(
    dev: &super::CudaDevice,
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    w: &TuneWeights<'_, super::driver::CudaExec>,
    rows: &[usize],
    opts: &TuneOptions,
) -> Result<TuneReport> {
    let e = dev.exec(stream)?;
    let mut clock = event_clock(stream)?;
    tune(&e, w, rows, opts, &mut *clock)
}

/// `Ok` when `tuning` (if any) may be applied to weights `[n, k]` on `dev`
/// ([`GemmTuning::check_applies`]; `set_tuning`).
#[cfg(feature = "cuda")]
pub(crate) fn check_tuning(
    dev: &super::CudaDevice,
    tuning: Option<&GemmTuning>,
    n: usize,
    k: usize,
) -> Result<()> {
    match tuning {
        Some(t) => t.check_applies(dev.name(), super::gemm::arch(dev), n, k),
        None => Ok(()),
    }
}

/// The GPU's clock for [`tune`]: after `warmup` calls, CUDA events around each of `reps` single
/// calls (the L2 cache written over before each when `flush_l2`); the median.
#[cfg(feature = "cuda")]
pub(crate) fn event_clock(
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
) -> Result<Box<Clock<'_>>> {
    use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
    let drv = |what: &str, e: cudarc::driver::DriverError| Error::Cuda {
        context: what.to_string(),
        detail: format!("{:?}", e.0),
    };
    let ctx = stream.context();
    let l2 = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        .map_err(|e| drv("L2 size", e))?
        .max(1 << 20) as usize;
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = ctx.new_event(flags).map_err(|e| drv("event", e))?;
    let end = ctx.new_event(flags).map_err(|e| drv("event", e))?;
    let mut flush: Option<cudarc::driver::CudaSlice<u8>> = None;
    Ok(Box::new(
        move |call: &mut dyn FnMut() -> Result<()>, opts: &TuneOptions| {
            if opts.flush_l2 && flush.is_none() {
                flush = Some(
                    stream
                        .alloc_zeros::<u8>(2 * l2)
                        .map_err(|e| drv("L2 flush buffer", e))?,
                );
            }
            for _ in 0..opts.warmup {
                call()?;
            }
            let mut v = Vec::with_capacity(opts.reps);
            for _ in 0..opts.reps {
                if let (true, Some(f)) = (opts.flush_l2, flush.as_mut()) {
                    stream.memset_zeros(f).map_err(|e| drv("L2 flush", e))?;
                }
                start.record(stream).map_err(|e| drv("event record", e))?;
                call()?;
                end.record(stream).map_err(|e| drv("event record", e))?;
                v.push(f64::from(start.elapsed_ms(&end).map_err(|e| drv("event time", e))?) * 1e-3);
            }
            v.sort_by(f64::total_cmp);
            Ok(v[v.len() / 2])
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kernel() -> Vec<GemmKernel> {
        let mut v = vec![
            GemmKernel::Auto,
            GemmKernel::Dp4a,
            GemmKernel::Dp4aGemv16,
            GemmKernel::Dp4aWarpPerRow,
            GemmKernel::Mma(None),
            GemmKernel::MmaGemv,
            GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
            GemmKernel::MmaGemvVariant(GemvVariant::Wide),
            GemmKernel::MmaGemvVariant(GemvVariant::Bulk),
            GemmKernel::MmaGemvVariant(GemvVariant::Prefetch),
        ];
        for tile in MmaTile::ALL {
            for splits in [1, 3, 16] {
                v.push(GemmKernel::Mma(Some(MmaConfig { tile, splits })));
            }
        }
        v
    }

    #[test]
    fn kernels_round_trip_through_text() {
        let all = every_kernel();
        for k in &all {
            assert_eq!(k.to_string().parse::<GemmKernel>().as_ref(), Ok(k), "{k}");
        }
        let names: std::collections::HashSet<String> = all.iter().map(|k| k.to_string()).collect();
        assert_eq!(names.len(), all.len(), "two kernels print alike");
        assert_eq!(
            "mma:wgmma128x256:4".parse::<GemmKernel>(),
            Ok(GemmKernel::Mma(Some(MmaConfig {
                tile: MmaTile::Wgmma128x256,
                splits: 4
            })))
        );
        for bad in [
            "",
            "Auto",
            "mma:",
            "mma:16x128",
            "mma:16x128:0",
            "mma:16x128:x",
            "mma:9x9:1",
            "mma:16x128:1:2",
            "gemv:tall",
        ] {
            assert!(bad.parse::<GemmKernel>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn candidates_are_distinct_runnable_and_auto_first() {
        for arch in [61u32, 75, 80, 86, 89, 90, 100] {
            for m in [1usize, 2, 8, 9, 16, 17, 64, 100, 128, 129, 256, 257, 4096] {
                for k in [16usize, 100, 4096] {
                    let c = candidates(m, k, arch, true);
                    // Without the unproven kernels: the same list less exactly those.
                    let proven = candidates(m, k, arch, false);
                    let expect: Vec<GemmKernel> = c
                        .iter()
                        .copied()
                        .filter(|c| c.ran_on_gpu_for(arch))
                        .collect();
                    assert_eq!(proven, expect, "m={m} k={k} sm_{arch}");
                    // On sm_75 that is dp4a alone: its tensor-core build never ran on a Turing
                    // GPU. Elsewhere every kernel of today's list has passed on a GPU (H200 and
                    // H100, 2026-11-26; the bulk-copy GEMV, the TMA tiles and the 16-row dp4a
                    // GEMV on the H200 in the ninth session, the deep 64 × 64 and 128 × 64
                    // tiles on the H100 in the tenth, the 64-column `wgmma` tiles, the
                    // clustered TMA tiles, the prefetching GEMV and stream tile and the sliced
                    // deep tiles on the H200 on 2026-11-28).
                    let dp4a = |k: &GemmKernel| {
                        matches!(
                            k,
                            GemmKernel::Auto | GemmKernel::Dp4a | GemmKernel::Dp4aWarpPerRow
                        )
                    };
                    let prefetch = GemmKernel::MmaGemvVariant(GemvVariant::Prefetch);
                    // (the 2 × 2 clusters once M fills more than one tile row of them)
                    let tile_offered = |tile: MmaTile| {
                        c.iter()
                            .any(|k| matches!(k, GemmKernel::Mma(Some(t)) if t.tile == tile))
                    };
                    if arch == 75 {
                        assert!(proven.iter().all(dp4a), "m={m} k={k}: {proven:?}");
                    } else {
                        assert_eq!(proven, c, "m={m} k={k} sm_{arch}");
                        assert_eq!(
                            c.contains(&prefetch),
                            arch >= 90 && m <= 128,
                            "m={m} k={k} sm_{arch}"
                        );
                        for (tile, offered) in [
                            (
                                MmaTile::Stream64x64Pf,
                                arch >= 90 && (16..=256).contains(&m),
                            ),
                            (MmaTile::Wgmma64x64, arch == 90 && m > 32),
                            (MmaTile::M64N64K2, arch >= 80 && m > 32),
                            (MmaTile::M128N64K2, arch >= 80 && m > 64),
                            (MmaTile::Tmc64x64M2N2, arch == 90 && m > 64),
                            (MmaTile::Tmc128x64M2N2, arch == 90 && m > 128),
                            (MmaTile::Tmc64x64N4, arch == 90),
                        ] {
                            assert_eq!(
                                tile_offered(tile),
                                offered,
                                "{tile:?} m={m} k={k} sm_{arch}"
                            );
                        }
                    }
                    let bulk = GemmKernel::MmaGemvVariant(GemvVariant::Bulk);
                    let is_tma =
                        |c: &GemmKernel| matches!(c, GemmKernel::Mma(Some(t)) if t.tile.is_tma());
                    assert_eq!(
                        c.contains(&bulk),
                        m <= 128 && arch >= 90,
                        "m={m} k={k} sm_{arch}"
                    );
                    assert_eq!(c.iter().any(is_tma), arch == 90, "m={m} k={k} sm_{arch}");
                    assert_eq!(c[0], GemmKernel::Auto);
                    let set: std::collections::HashSet<String> =
                        c.iter().map(|k| k.to_string()).collect();
                    assert_eq!(set.len(), c.len(), "duplicates at m={m} k={k} sm_{arch}");
                    for kernel in &c {
                        assert_eq!(
                            arch_refusal_of(*kernel, arch),
                            None,
                            "{kernel} at sm_{arch}"
                        );
                        if let GemmKernel::Mma(Some(cfg)) = kernel {
                            let kt = k.div_ceil(cfg.tile.bk());
                            assert!(
                                cfg.splits == 1 || cfg.splits as usize * 2 <= kt,
                                "{kernel} at k={k}"
                            );
                            assert!(SPLITS.contains(&cfg.splits));
                            assert!(
                                !cfg.tile.is_stream() || (16..=256).contains(&m),
                                "{kernel} at m={m}"
                            );
                        }
                    }
                    let has = |f: &dyn Fn(&GemmKernel) -> bool| c.iter().any(f);
                    // Before sm_75 only the dp4a kernels run: Auto, and dp4a forced (both GEMVs)
                    // for few rows. On sm_75 the tensor-core tiles within its 64 KiB of shared
                    // memory too (forced or tuned; Auto stays dp4a there).
                    let dp4a_only = c.iter().all(dp4a);
                    assert_eq!(dp4a_only, arch < 75, "m={m} sm_{arch}");
                    if arch == 75 {
                        assert!(c.iter().all(|k| !matches!(
                            k,
                            GemmKernel::Mma(Some(t)) if t.tile.is_wgmma() || t.tile.smem_bytes() > 64 << 10
                        )));
                    }
                    assert_eq!(has(&|k| *k == GemmKernel::Dp4a), m <= 8);
                    assert_eq!(has(&|k| *k == GemmKernel::Dp4aWarpPerRow), m <= 8);
                    // (`Dp4a` runs it on the layer's aligned rows: no separate candidate)
                    assert!(!has(&|k| *k == GemmKernel::Dp4aGemv16));
                    assert_eq!(
                        has(
                            &|k| matches!(k, GemmKernel::Mma(Some(t)) if t.tile.is_wgmma() && !t.tile.is_tma())
                        ),
                        arch == 90 && m > 32
                    );
                    assert_eq!(has(&|k| *k == GemmKernel::MmaGemv), arch >= 75 && m <= 128);
                }
            }
        }
        // The design shapes get every split where K allows: 4096 has 64 k tiles of 64 bytes.
        let c = candidates(128, 4096, 90, true);
        for tile in [
            MmaTile::M16N128,
            MmaTile::Stream128x64,
            MmaTile::Wgmma128x128,
        ] {
            for splits in SPLITS {
                assert!(
                    c.contains(&GemmKernel::Mma(Some(MmaConfig { tile, splits }))),
                    "{tile:?} s{splits}"
                );
            }
        }
    }

    fn arch_refusal_of(k: GemmKernel, arch: u32) -> Option<String> {
        ops::arch_refusal(k, arch)
    }

    fn sample() -> GemmTuning {
        GemmTuning {
            device: "NVIDIA H200".into(),
            arch: 90,
            n: 4096,
            k: 1024,
            entries: vec![
                TunedKernel {
                    m: 1,
                    kernel: GemmKernel::MmaGemvVariant(GemvVariant::Wide),
                    seconds: 7.25e-6,
                    auto_seconds: 7.6e-6,
                },
                TunedKernel {
                    m: 8,
                    kernel: GemmKernel::Auto,
                    seconds: 7.9e-6,
                    auto_seconds: 7.9e-6,
                },
                TunedKernel {
                    m: 128,
                    kernel: GemmKernel::Mma(Some(MmaConfig {
                        tile: MmaTile::Wgmma128x128,
                        splits: 4,
                    })),
                    seconds: 1.0 / 3.0 * 1e-5,
                    auto_seconds: 2.5e-5,
                },
            ],
        }
    }

    #[test]
    fn a_tuning_round_trips_through_text_and_picks_buckets() {
        let t = sample();
        assert_eq!(t.file_name(), "4096x1024.tuning");
        let text = t.to_text();
        assert_eq!(GemmTuning::from_text(&text).unwrap(), t, "{text}");
        assert!(text.starts_with("int8rt-gemm-tuning 1\ndevice NVIDIA H200\narch 90\nshape 4096 1024\nm 1 gemv:wide "), "{text}");
        let wide = GemmKernel::MmaGemvVariant(GemvVariant::Wide);
        let wg = t.entries()[2].kernel;
        for (m, want) in [
            (1, Some(wide)),
            (2, Some(GemmKernel::Auto)),
            (8, Some(GemmKernel::Auto)),
            (9, Some(wg)),
            (128, Some(wg)),
            (129, None),
        ] {
            assert_eq!(t.kernel_for(m), want, "m={m}");
        }
        assert_eq!(resolve(GemmKernel::Auto, Some(&t), 100), wg);
        assert_eq!(resolve(GemmKernel::Auto, Some(&t), 1000), GemmKernel::Auto);
        assert_eq!(
            resolve(GemmKernel::Dp4a, Some(&t), 1),
            GemmKernel::Dp4a,
            "a forced kernel wins"
        );
        assert_eq!(resolve(GemmKernel::Auto, None, 1), GemmKernel::Auto);
    }

    #[test]
    fn malformed_tunings_are_format_errors_naming_the_line() {
        let good = sample().to_text();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "line 1"),
            (good.replacen("tuning 1", "tuning 2", 1), "line 1"),
            (good.replacen("arch 90", "arch ninety", 1), "line 3"),
            (good.replacen("shape 4096 1024", "shape 4096", 1), "line 4"),
            (good.replacen("device ", "devices ", 1), "line 2"),
            (good.replacen("m 8 auto", "m 8 fast", 1), "line 6"),
            (good.replacen("m 8 auto", "m 0 auto", 1), "line 6"),
            (good.replacen("m 8 auto", "m 1 auto", 1), "line 6"),
            (good.replacen("m 8 auto", "n 8 auto", 1), "line 6"),
            (
                good.replacen("m 8 auto 7.9e-6", "m 8 auto NaN", 1),
                "line 6",
            ),
            (good.replacen("m 8 auto 7.9e-6", "m 8 auto -1", 1), "line 6"),
            (good.clone() + "m 200 auto 1e-6\n", "line 8"),
            (
                "int8rt-gemm-tuning 1\ndevice x\n".to_string(),
                "missing `arch`",
            ),
        ];
        for (text, want) in cases {
            match GemmTuning::from_text(&text) {
                Err(crate::Error::Format { detail, .. }) => {
                    assert!(detail.contains(want), "{detail:?} lacks {want:?}")
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_tuning_applies_to_its_own_shape_and_gpu_only() {
        let t = sample();
        t.check_applies("NVIDIA H200", 90, 4096, 1024).unwrap();
        for (dev, arch, n, k, want) in [
            (
                "NVIDIA H200",
                90,
                1024,
                4096,
                "measured for weights [4096, 1024]",
            ),
            (
                "NVIDIA H100 80GB HBM3",
                90,
                4096,
                1024,
                "measured on NVIDIA H200 (sm_90)",
            ),
        ] {
            let err = t.check_applies(dev, arch, n, k).unwrap_err();
            assert!(
                matches!(&err, crate::Error::InvalidParam { detail, .. } if detail.contains(want)),
                "{err:?}"
            );
        }
        // A hand-edited tuning that names a wgmma tile for an sm_80 card is refused.
        let mut a100 = sample();
        a100.device = "NVIDIA A100".into();
        a100.arch = 80;
        let err = a100
            .check_applies("NVIDIA A100", 80, 4096, 1024)
            .unwrap_err();
        assert!(err.to_string().contains("sm_90 alone"), "{err}");
    }

    #[test]
    fn the_first_difference_is_located_and_equal_outputs_pass() {
        let want = vec![1, 2, 3, 4, 5, 6];
        assert_eq!(first_difference(&want, &want.clone(), 3), None);
        let mut got = want.clone();
        got[4] = -7;
        got[5] = 0;
        assert_eq!(
            first_difference(&want, &got, 3).unwrap(),
            "Y[1, 1] = -7 where auto gives 5"
        );
        assert!(first_difference(&want, &want[..5], 3).is_some());
    }

    #[test]
    fn the_host_check_of_the_default_path_finds_a_wrong_product() {
        // x: 3 rows of 5 (k = 4 used), w: 2 rows of 6 (k = 4 used); y = x · wᵀ.
        let x: Vec<i8> = vec![1, 2, 3, 4, 9, -1, 0, 2, -3, 9, 5, 5, 5, 5, 9];
        let w: Vec<i8> = vec![1, 1, 1, 1, 7, 7, -2, 0, 3, 1, 7, 7];
        let rows = HostRows {
            x: &x,
            lda: 5,
            w: &w,
            ldb: 6,
            n: 2,
            k: 4,
        };
        let mut y = vec![10, 11, -2, 5, 20, 10];
        assert_eq!(rows.first_difference(&y, [0, 1, 2]), None);
        y[3] = 6;
        assert_eq!(
            rows.first_difference(&y, [0, 1, 2]).unwrap(),
            "Y[1, 1] = 6 where the host computes 5"
        );
        assert_eq!(
            rows.first_difference(&y, [0, 2, 2]),
            None,
            "row 1 unchecked"
        );
    }

    #[test]
    fn choose_needs_auto_first_and_respects_the_guard() {
        let g = GemmKernel::MmaGemv;
        assert!(
            choose(4, &[(g, 1.0)], 0.03).is_err(),
            "without Auto's time there is no baseline"
        );
        let e = choose(
            4,
            &[(GemmKernel::Auto, 1.0), (g, 0.5), (GemmKernel::Dp4a, 0.6)],
            0.03,
        )
        .unwrap();
        assert_eq!((e.kernel, e.seconds, e.auto_seconds), (g, 0.5, 1.0));
        let e = choose(4, &[(GemmKernel::Auto, 1.0), (g, 0.975)], 0.03).unwrap();
        assert_eq!((e.kernel, e.seconds), (GemmKernel::Auto, 1.0));
    }
}
