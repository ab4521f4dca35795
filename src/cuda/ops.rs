//! cuda/ops.rs — the host wrappers of the kernels, written once against [`Exec`]: argument
//! checks, launch geometry, parameter blocks, and the device-resident linear layer
//! ([`DevLinear`]). This is the last layer before `unsafe`: every launch below happens only
//! after the buffer lengths its kernel can index have been checked here.
//!
//! Vocabulary: `ldq` / `lda` / `ldb` are row strides in elements; [`padded_k`] is the stride the
//! crate gives its own int8 rows (a multiple of 16 so the kernels can read 16 bytes at a time).

use half::{bf16, f16};

use super::exec::{Elem, Exec, Grid};
use super::params::*;
use super::registry::KernelId;
use crate::error::{Error, Result};
use crate::gemm::{OutBuf, OutKind, OutQuant, Path};
use crate::nn::{ActivationQuant, QuantLinear};
use crate::quant::{Granularity, QuantParams, Rule, Scheme};

/// Bytes a row stride must be a multiple of for the 16-byte kernels.
pub(crate) const ROW_ALIGN: usize = 16;
/// Rows up to which the GEMM uses the skinny (weight-streaming) kernel (`SKINNY_MAX_M`).
pub(crate) const SKINNY_MAX_M: usize = 8;
/// Output columns per block of the skinny kernel (one warp each).
const SKINNY_COLS: usize = 8;
/// The tiled kernel's block tile (`tiled::BM`, `tiled::BN`).
const TILE_M: usize = 128;
const TILE_N: usize = 128;
/// Threads per block of the elementwise and per-row kernels.
pub(crate) const THREADS: u32 = 256;

/// The row stride the crate uses for `k` int8 values.
pub(crate) fn padded_k(k: usize) -> usize {
    k.div_ceil(ROW_ALIGN) * ROW_ALIGN
}

fn to_i32(what: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Dimension {
        what,
        detail: format!("{v} does not fit the kernels' 32-bit sizes"),
    })
}

fn need<E: Exec, T: Elem>(what: &'static str, b: &E::Buf<T>, len: usize) -> Result<()> {
    if E::len(b) < len {
        return Err(Error::shape(what, len, E::len(b)));
    }
    Ok(())
}

/// Integer activations on the device.
pub(crate) enum DevAct<'a, E: Exec> {
    S8(&'a E::Buf<i8>),
    U8(&'a E::Buf<u8>),
}

/// The bias of a device GEMM.
pub(crate) enum DevBias<'a, E: Exec> {
    None,
    I32(&'a E::Buf<i32>),
    F32(&'a E::Buf<f32>),
}

/// A device output buffer `[m, n]` and its kind.
pub(crate) enum DevOut<'a, E: Exec> {
    I32(&'a mut E::Buf<i32>),
    F32(&'a mut E::Buf<f32>),
    F16(&'a mut E::Buf<f16>),
    Bf16(&'a mut E::Buf<bf16>),
    I8(&'a mut E::Buf<i8>, OutQuant),
}

impl<E: Exec> DevOut<'_, E> {
    fn len(&self) -> usize {
        match self {
            DevOut::I32(b) => E::len(*b),
            DevOut::F32(b) => E::len(*b),
            DevOut::F16(b) => E::len(*b),
            DevOut::Bf16(b) => E::len(*b),
            DevOut::I8(b, _) => E::len(*b),
        }
    }
    fn kind(&self) -> OutKind {
        match self {
            DevOut::I32(_) => OutKind::I32,
            DevOut::F32(_) => OutKind::F32,
            DevOut::F16(_) => OutKind::F16,
            DevOut::Bf16(_) => OutKind::Bf16,
            DevOut::I8(_, q) => OutKind::I8(*q),
        }
    }
}

/// The checks `GemmArgs::validate` makes on the output kind.
fn check_out_kind(kind: OutKind, f32_bias: bool) -> Result<()> {
    match kind {
        OutKind::I32 if f32_bias => Err(Error::Unsupported(
            "a float bias cannot be added to raw i32 output".into(),
        )),
        OutKind::I8(q) => q.validate(),
        _ => Ok(()),
    }
}

/// One device GEMM: `Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ)` (DESIGN.md §1).
pub(crate) struct GemmDev<'a, E: Exec> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub x: DevAct<'a, E>,
    pub lda: usize,
    pub w: &'a E::Buf<i8>,
    pub ldb: usize,
    /// `Σ_k w[n, k]` (read with zero points).
    pub wsum: &'a E::Buf<i32>,
    /// `[n]` weight scales.
    pub w_scale: &'a E::Buf<f32>,
    /// `[1]` (per tensor) or `[m]` (per row).
    pub act_scale: &'a E::Buf<f32>,
    pub per_row: bool,
    /// Zero points, `[1]` or `[m]` like the scales; `None` for 0.
    pub act_zp: Option<&'a E::Buf<i32>>,
    pub bias: DevBias<'a, E>,
    /// When its count is non-zero the kernel writes nothing.
    pub status: Option<&'a E::Buf<Status>>,
}

/// The kernel and grid for an `m × n` GEMM: the skinny kernel for `m ≤ SKINNY_MAX_M`, else the
/// tiled one; 16-byte loads when both strides allow them.
pub(crate) fn gemm_plan(
    m: usize,
    n: usize,
    u8_act: bool,
    aligned: bool,
) -> Result<(KernelId, Grid)> {
    use KernelId::*;
    let block = [THREADS, 1, 1];
    if m <= SKINNY_MAX_M {
        let k = match (u8_act, aligned) {
            (false, true) => GemvDp4aS8,
            (true, true) => GemvDp4aU8,
            (false, false) => GemvDp4aS8Unaligned,
            (true, false) => GemvDp4aU8Unaligned,
        };
        let gx = u32::try_from(n.div_ceil(SKINNY_COLS)).map_err(|_| Error::Dimension {
            what: "n",
            detail: format!("{n} columns exceed the grid"),
        })?;
        return Ok((
            k,
            Grid {
                grid: [gx, 1, 1],
                block,
            },
        ));
    }
    let k = match (u8_act, aligned) {
        (false, true) => GemmDp4aS8,
        (true, true) => GemmDp4aU8,
        (false, false) => GemmDp4aS8Unaligned,
        (true, false) => GemmDp4aU8Unaligned,
    };
    let gy = m.div_ceil(TILE_M);
    if gy > 65535 {
        return Err(Error::Dimension {
            what: "m",
            detail: format!("{m} rows exceed the grid's 65535 row blocks"),
        });
    }
    let gx = u32::try_from(n.div_ceil(TILE_N)).map_err(|_| Error::Dimension {
        what: "n",
        detail: format!("{n} columns exceed the grid"),
    })?;
    Ok((
        k,
        Grid {
            grid: [gx, gy as u32, 1],
            block,
        },
    ))
}

/// Run a device GEMM. Checks every length the kernel indexes, then launches. The accumulator
/// bound (DESIGN.md §1) is the caller's: layers prove it when they are built.
pub(crate) fn gemm<E: Exec>(e: &E, g: &GemmDev<'_, E>, out: &mut DevOut<'_, E>) -> Result<Path> {
    let (m, n, k) = (g.m, g.n, g.k);
    check_out_kind(out.kind(), matches!(g.bias, DevBias::F32(_)))?;
    let (mi, ni, ki) = (to_i32("m", m)?, to_i32("n", n)?, to_i32("k", k)?);
    if g.lda < k || g.ldb < k {
        return Err(Error::Dimension {
            what: "row stride",
            detail: format!("lda {} and ldb {} must be ≥ k = {k}", g.lda, g.ldb),
        });
    }
    let span = |rows: usize, ld: usize| if rows == 0 { 0 } else { (rows - 1) * ld + k };
    match g.x {
        DevAct::S8(b) => need::<E, i8>("activations [m, lda]", b, span(m, g.lda))?,
        DevAct::U8(b) => need::<E, u8>("activations [m, lda]", b, span(m, g.lda))?,
    }
    need::<E, i8>("weights [n, ldb]", g.w, span(n, g.ldb))?;
    need::<E, i32>("wsum [n]", g.wsum, n)?;
    need::<E, f32>("weight scales [n]", g.w_scale, n)?;
    let act_len = if g.per_row { m } else { 1 };
    need::<E, f32>("activation scales", g.act_scale, act_len)?;
    if let Some(z) = g.act_zp {
        need::<E, i32>("activation zero points", z, act_len)?;
    }
    match g.bias {
        DevBias::None => {}
        DevBias::I32(b) => need::<E, i32>("bias [n]", b, n)?,
        DevBias::F32(b) => need::<E, f32>("bias [n]", b, n)?,
    }
    if let Some(s) = g.status {
        need::<E, Status>("status", s, 1)?;
    }
    let yl = crate::error::checked_len("Y = [m, n]", m, n)?;
    if out.len() < yl {
        return Err(Error::shape("output [m, n]", yl, out.len()));
    }
    if m == 0 || n == 0 {
        return Ok(Path::CudaDp4a);
    }

    let (x, _gx) = match g.x {
        DevAct::S8(b) => e.addr(b),
        DevAct::U8(b) => e.addr(b),
    };
    let (w, _gw) = e.addr(g.w);
    // 16-byte loads need 16-byte strides and base addresses (allocations are 256-byte aligned,
    // but the check costs nothing and covers any buffer).
    let u8_act = matches!(g.x, DevAct::U8(_));
    let aligned = g.lda.is_multiple_of(ROW_ALIGN)
        && g.ldb.is_multiple_of(ROW_ALIGN)
        && x.is_multiple_of(ROW_ALIGN as u64)
        && w.is_multiple_of(ROW_ALIGN as u64);
    let (kid, grid) = gemm_plan(m, n, u8_act, aligned)?;
    let (wsum, _gs) = e.addr(g.wsum);
    let (w_scale, _gws) = e.addr(g.w_scale);
    let (act_scale, _gas) = e.addr(g.act_scale);
    let (act_zp, _gz) = match g.act_zp {
        Some(z) => {
            let (a, gd) = e.addr(z);
            (a, Some(gd))
        }
        None => (0, None),
    };
    let (bias_i32, bias_f32, _gb) = match g.bias {
        DevBias::None => (0, 0, None),
        DevBias::I32(b) => {
            let (a, gd) = e.addr(b);
            (a, 0, Some(gd))
        }
        DevBias::F32(b) => {
            let (a, gd) = e.addr(b);
            (0, a, Some(gd))
        }
    };
    let (status, _gst) = match g.status {
        Some(s) => {
            let (a, gd) = e.addr(s);
            (a, Some(gd))
        }
        None => (0, None),
    };
    let kind = out.kind();
    let (out_kind, oq) = match kind {
        OutKind::I32 => (OUT_I32, OutQuant::symmetric(1.0)),
        OutKind::F32 => (OUT_F32, OutQuant::symmetric(1.0)),
        OutKind::F16 => (OUT_F16, OutQuant::symmetric(1.0)),
        OutKind::Bf16 => (OUT_BF16, OutQuant::symmetric(1.0)),
        OutKind::I8(q) => (OUT_I8, q),
    };
    let (y, _gy) = match out {
        DevOut::I32(b) => e.addr_mut(*b),
        DevOut::F32(b) => e.addr_mut(*b),
        DevOut::F16(b) => e.addr_mut(*b),
        DevOut::Bf16(b) => e.addr_mut(*b),
        DevOut::I8(b, _) => e.addr_mut(*b),
    };
    let p = GemmParams {
        x,
        w,
        y,
        bias_i32,
        act_zp,
        wsum,
        status,
        lda: g.lda as i64,
        ldb: g.ldb as i64,
        ldy: n as i64,
        m: mi,
        n: ni,
        k: ki,
        zp_stride: i32::from(g.per_row),
        epi: EpiParams {
            w_scale,
            act_scale,
            bias_f32,
            per_row: i32::from(g.per_row),
            out_kind,
            out_scale: oq.scale,
            out_zp: oq.zero_point,
            out_qmin: oq.qmin,
            out_qmax: oq.qmax,
        },
    };
    // SAFETY: every address comes from a buffer of `e` whose guard lives to the end of this
    // function; the lengths checked above cover every index the kernel forms: x rows
    // i < m at i·lda + [0, k), w rows j < n at j·ldb + [0, k) (16-byte reads only below
    // k rounded down to 16, and only when strides and base addresses are multiples of 16, as
    // checked for `aligned`), wsum / w_scale / bias [0, n), act_scale / act_zp [0, m) per row or [0] per
    // tensor, y [0, m·n), status [0]. `GemmParams` is the block of every GEMM kernel.
    unsafe { e.launch(kid, grid, &p)? };
    Ok(Path::CudaDp4a)
}

// ---------------------------------------------------------------------------------------------
// Activation quantization.
// ---------------------------------------------------------------------------------------------

/// Quantized activations produced on the device, with their scales.
pub(crate) struct DevQuantized<E: Exec> {
    pub q: DevQ<E>,
    pub ldq: usize,
    pub scales: E::Buf<f32>,
    pub zps: Option<E::Buf<i32>>,
    pub per_row: bool,
}

/// An owned device int8 buffer.
pub(crate) enum DevQ<E: Exec> {
    S8(E::Buf<i8>),
    U8(E::Buf<u8>),
}

/// How activations are quantized on the device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ActMode {
    Dynamic { scheme: Scheme, per_row: bool },
    Static(QuantParams),
}

/// Whether static parameters quantize into `s8` (zero point 0, range within i8) or `u8`; the
/// rule of `nn::linear::quantize_with`.
pub(crate) fn static_is_s8(p: &QuantParams) -> bool {
    p.zero_point() == 0 && p.qmin() >= -128 && p.qmax() <= 127
}

/// A static activation scale `[1]` and zero point `[1]` (absent for 0) on the device.
pub(crate) type StaticScale<E> = (<E as Exec>::Buf<f32>, Option<<E as Exec>::Buf<i32>>);
/// [`StaticScale`] borrowed.
pub(crate) type StaticScaleRef<'a, E> =
    (&'a <E as Exec>::Buf<f32>, Option<&'a <E as Exec>::Buf<i32>>);

/// Quantize `x[m, k]` (device, f32) into `q[m, padded_k(k)]`. Non-finite inputs are counted in
/// `status` (the caller reads it).
pub(crate) fn quantize_activations<E: Exec>(
    e: &E,
    x: &E::Buf<f32>,
    m: usize,
    k: usize,
    mode: ActMode,
    static_scale: Option<StaticScaleRef<'_, E>>,
    status: &mut E::Buf<Status>,
) -> Result<DevQuantized<E>> {
    let (mi, ki) = (to_i32("m", m)?, to_i32("k", k)?);
    let xl = crate::error::checked_len("input [m, in_features]", m, k)?;
    need::<E, f32>("input [m, in_features]", x, xl)?;
    need::<E, Status>("status", status, 1)?;
    let ldq = padded_k(k);
    let ql = crate::error::checked_len("quantized input", m, ldq)?.max(1);
    let (u8_out, per_row, nscales) = match mode {
        ActMode::Dynamic { scheme, per_row } => (
            scheme == Scheme::Asymmetric,
            per_row,
            if per_row { m.max(1) } else { 1 },
        ),
        ActMode::Static(p) => (!static_is_s8(&p), false, 1),
    };
    let mut q = if u8_out {
        DevQ::U8(e.alloc::<u8>(ql)?)
    } else {
        DevQ::S8(e.alloc::<i8>(ql)?)
    };
    let mut scales = e.alloc::<f32>(nscales)?;
    let mut zps = if u8_out && !matches!(mode, ActMode::Static(_)) {
        Some(e.alloc::<i32>(nscales)?)
    } else {
        None
    };
    // The per-tensor range as order-preserving words: min starts at +inf, max at −inf.
    let mut range = e.upload(&[
        f32_to_ordered(f32::INFINITY),
        f32_to_ordered(f32::NEG_INFINITY),
    ])?;
    let kid = if u8_out {
        KernelId::ActQuantU8
    } else {
        KernelId::ActQuantS8
    };
    if m == 0 {
        return Ok(DevQuantized {
            q,
            ldq,
            scales,
            zps,
            per_row,
        });
    }
    let grid = Grid {
        grid: [mi as u32, 1, 1],
        block: [THREADS, 1, 1],
    };
    let mut base = ActQuantParams {
        ldq: ldq as i64,
        m: mi,
        k: ki,
        ..Default::default()
    };
    let modes: &[i32] = match mode {
        ActMode::Dynamic { per_row: true, .. } => &[ACT_ROWS],
        ActMode::Dynamic { per_row: false, .. } => &[ACT_RANGE, ACT_TENSOR],
        ActMode::Static(_) => &[ACT_STATIC],
    };
    if let ActMode::Static(p) = mode {
        let (rule, factor) = match p.rule() {
            Rule::Divide => (RULE_DIVIDE, 0.0),
            Rule::MultiplyInverse { inv } => (RULE_MULTIPLY, inv),
            Rule::UnitScale { unit } => (RULE_MULTIPLY, unit),
        };
        base.rule = rule;
        base.factor = factor;
        base.qmin = p.qmin();
        base.qmax = p.qmax();
    }
    for &md in modes {
        let (xa, _g0) = e.addr(x);
        let (qa, _g1) = match &mut q {
            DevQ::S8(b) => e.addr_mut(b),
            DevQ::U8(b) => e.addr_mut(b),
        };
        let (sa, _g2, za, _g3) = match static_scale {
            Some((s, z)) => {
                need::<E, f32>("static scale", s, 1)?;
                let (sa, g2) = e.addr(s);
                let (za, g3) = match z {
                    Some(z) => {
                        need::<E, i32>("static zero point", z, 1)?;
                        let (a, g) = e.addr(z);
                        (a, Some(g))
                    }
                    None => (0, None),
                };
                (sa, g2, za, g3)
            }
            None => {
                let (sa, g2) = e.addr_mut(&mut scales);
                let (za, g3) = match &mut zps {
                    Some(z) => {
                        let (a, g) = e.addr_mut(z);
                        (a, Some(g))
                    }
                    None => (0, None),
                };
                (sa, g2, za, g3)
            }
        };
        let (ra, _g4) = e.addr_mut(&mut range);
        let (st, _g5) = e.addr_mut(status);
        let p = ActQuantParams {
            x: xa,
            q: qa,
            scales: sa,
            zps: za,
            range: ra,
            status: st,
            mode: md,
            ..base
        };
        // SAFETY: x holds m·k floats, q m·ldq bytes, scales / zps m (per row) or 1 entries,
        // range 2, status 1 (checked or allocated above); one block per row, threads stride
        // over columns < ldq. `ActQuantParams` is the block of both act_quant kernels.
        unsafe { e.launch(kid, grid, &p)? };
    }
    Ok(DevQuantized {
        q,
        ldq,
        scales,
        zps,
        per_row,
    })
}

/// Twin of `f32_to_ordered` in kernels/common.cuh: an unsigned word with the order of the float.
pub(crate) fn f32_to_ordered(f: f32) -> u32 {
    let b = f.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Twin of `ordered_to_f32` in kernels/common.cuh: the inverse of [`f32_to_ordered`].
pub(crate) fn ordered_to_f32(o: u32) -> f32 {
    f32::from_bits(if o & 0x8000_0000 != 0 {
        o & 0x7fff_ffff
    } else {
        !o
    })
}

/// `Err(NonFinite)` naming `tensor` when the status buffer recorded non-finite values (waits for
/// the executor).
pub(crate) fn check_status<E: Exec>(e: &E, status: &E::Buf<Status>, tensor: &str) -> Result<()> {
    let mut s = [Status::CLEAR];
    e.read(status, &mut s)?;
    if s[0].count == 0 {
        return Ok(());
    }
    Err(Error::NonFinite {
        tensor: tensor.to_string(),
        count: s[0].count as usize,
        first_index: s[0].first as usize,
    })
}

// ---------------------------------------------------------------------------------------------
// Elementwise quantize / dequantize.
// ---------------------------------------------------------------------------------------------

/// Which axis of a `[rows, cols]` matrix carries one parameter set each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// One set for the whole tensor.
    Tensor,
    /// One set per row (per token of activations; per output channel of weights `[out, in]`).
    Row,
    /// One set per column (per channel of activations `[tokens, channels]`).
    Column,
}

/// `(groups, inner)` of the kernels' channel formula for `axis`.
fn groups_of(axis: Axis, rows: usize, cols: usize) -> (usize, usize) {
    match axis {
        Axis::Tensor => (1, 1),
        Axis::Row => (rows, cols),
        Axis::Column => (cols, 1),
    }
}

/// Per-group arrays of the elementwise kernels: scales, factors, zero points, and whether the rule
/// multiplies.
type ParamArrays = (Vec<f32>, Vec<f32>, Vec<i32>, bool);

/// Per-group parameter arrays for the elementwise kernels, checked to share one rule family and
/// one integer range.
fn param_arrays(params: &[QuantParams], groups: usize) -> Result<ParamArrays> {
    if params.len() != groups {
        return Err(Error::shape(
            "quantization parameters (one per group)",
            groups,
            params.len(),
        ));
    }
    let first = params[0];
    let mul = |p: &QuantParams| !matches!(p.rule(), Rule::Divide);
    let unit = |p: &QuantParams| matches!(p.rule(), Rule::UnitScale { .. });
    if params.iter().any(|p| {
        p.qmin() != first.qmin()
            || p.qmax() != first.qmax()
            || mul(p) != mul(&first)
            || unit(p) != unit(&first)
    }) {
        return Err(Error::Unsupported(
            "all parameter sets of one tensor must share the integer range and the rule".into(),
        ));
    }
    let scale = params.iter().map(|p| p.scale()).collect();
    let factor = params
        .iter()
        .map(|p| match p.rule() {
            Rule::Divide => 0.0,
            Rule::MultiplyInverse { inv } => inv,
            Rule::UnitScale { unit } => unit,
        })
        .collect();
    let zp = params.iter().map(|p| p.zero_point()).collect();
    Ok((scale, factor, zp, mul(&first)))
}

/// Quantize `x[rows, cols]` with one parameter set per `axis` group into `q` (the range must fit
/// the output type). ±inf saturate; NaN is an error naming `tensor` (as
/// `QuantParams::quantize_to_i8`). Waits for the executor.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize<E: Exec>(
    e: &E,
    tensor: &str,
    x: &E::Buf<f32>,
    rows: usize,
    cols: usize,
    axis: Axis,
    params: &[QuantParams],
    q: DevQRef<'_, E>,
) -> Result<()> {
    let len = crate::error::checked_len("tensor [rows, cols]", rows, cols)?;
    let (groups, inner) = groups_of(axis, rows, cols);
    if groups == 0 {
        return Ok(());
    }
    let (scale, factor, zp, mul) = param_arrays(params, groups)?;
    let (qmin, qmax) = (params[0].qmin(), params[0].qmax());
    let u8_out = matches!(q, DevQRef::U8(_));
    if u8_out && (qmin < 0 || qmax > 255) {
        return Err(Error::param("qmin/qmax", "range does not fit u8"));
    }
    if !u8_out && (qmin < -128 || qmax > 127) {
        return Err(Error::param("qmin/qmax", "range does not fit i8"));
    }
    need::<E, f32>("input", x, len)?;
    match &q {
        DevQRef::S8(b) => need::<E, i8>("quantized output", b, len)?,
        DevQRef::U8(b) => need::<E, u8>("quantized output", b, len)?,
    }
    if len == 0 {
        return Ok(());
    }
    let sb = e.upload(&scale)?;
    let fb = e.upload(&factor)?;
    let zb = e.upload(&zp)?;
    let mut status = e.upload(&[Status::CLEAR])?;
    {
        let (xa, _g0) = e.addr(x);
        let (qa, _g1) = match q {
            DevQRef::S8(b) => e.addr_mut(b),
            DevQRef::U8(b) => e.addr_mut(b),
        };
        let (sa, _g2) = e.addr(&sb);
        let (fa, _g3) = e.addr(&fb);
        let (za, _g4) = e.addr(&zb);
        let (st, _g5) = e.addr_mut(&mut status);
        let p = QuantizeParams {
            x: xa,
            q: qa,
            scale: sa,
            factor: fa,
            zp: za,
            status: st,
            len: len as i64,
            inner: inner as i64,
            groups: to_i32("groups", groups)?,
            rule: if mul { RULE_MULTIPLY } else { RULE_DIVIDE },
            qmin,
            qmax,
            allow_inf: 1,
            pad: 0,
        };
        let kid = if u8_out {
            KernelId::QuantizeF32U8
        } else {
            KernelId::QuantizeF32S8
        };
        // SAFETY: x and q hold `len` elements, the parameter arrays `groups` entries and every
        // channel index (i / inner) % groups is < groups; status holds one entry.
        unsafe { e.launch(kid, elementwise_grid(len), &p)? };
    }
    check_status(e, &status, tensor)
}

/// A borrowed device int8 buffer.
pub(crate) enum DevQRef<'a, E: Exec> {
    S8(&'a mut E::Buf<i8>),
    U8(&'a mut E::Buf<u8>),
}

/// A borrowed device int8 buffer (read only).
pub(crate) enum DevQIn<'a, E: Exec> {
    S8(&'a E::Buf<i8>),
    U8(&'a E::Buf<u8>),
}

/// Dequantize `q[rows, cols]` with one parameter set per `axis` group into `y`.
pub(crate) fn dequantize<E: Exec>(
    e: &E,
    q: DevQIn<'_, E>,
    rows: usize,
    cols: usize,
    axis: Axis,
    params: &[QuantParams],
    y: &mut E::Buf<f32>,
) -> Result<()> {
    let len = crate::error::checked_len("tensor [rows, cols]", rows, cols)?;
    let (groups, inner) = groups_of(axis, rows, cols);
    if groups == 0 {
        return Ok(());
    }
    let (scale, factor, zp, _) = param_arrays(params, groups)?;
    let unit = matches!(params[0].rule(), Rule::UnitScale { .. });
    match &q {
        DevQIn::S8(b) => need::<E, i8>("quantized input", b, len)?,
        DevQIn::U8(b) => need::<E, u8>("quantized input", b, len)?,
    }
    need::<E, f32>("output", y, len)?;
    if len == 0 {
        return Ok(());
    }
    let sb = e.upload(&scale)?;
    let fb = e.upload(&factor)?;
    let zb = e.upload(&zp)?;
    let (qa, _g0) = match q {
        DevQIn::S8(b) => e.addr(b),
        DevQIn::U8(b) => e.addr(b),
    };
    let u8_in = matches!(q, DevQIn::U8(_));
    let (ya, _g1) = e.addr_mut(y);
    let (sa, _g2) = e.addr(&sb);
    let (fa, _g3) = e.addr(&fb);
    let (za, _g4) = e.addr(&zb);
    let p = DequantizeParams {
        q: qa,
        y: ya,
        scale: sa,
        factor: fa,
        zp: za,
        len: len as i64,
        inner: inner as i64,
        groups: to_i32("groups", groups)?,
        rule: if unit { DEQ_UNIT } else { DEQ_AFFINE },
    };
    let kid = if u8_in {
        KernelId::DequantizeU8F32
    } else {
        KernelId::DequantizeS8F32
    };
    // SAFETY: q and y hold `len` elements, the parameter arrays `groups` entries, and every
    // channel index is < groups.
    unsafe { e.launch(kid, elementwise_grid(len), &p)? };
    Ok(())
}

/// A grid-stride launch over `len` elements: at most 4096 blocks of 256 threads.
fn elementwise_grid(len: usize) -> Grid {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 4096) as u32;
    Grid {
        grid: [blocks, 1, 1],
        block: [THREADS, 1, 1],
    }
}

// ---------------------------------------------------------------------------------------------
// The device-resident linear layer.
// ---------------------------------------------------------------------------------------------

/// A [`QuantLinear`]'s device twin: weights uploaded once (rows padded to [`padded_k`]), `wsum`,
/// per-column weight scales, the bias in the form the activation quantization needs, and, for a
/// static activation scale, that scale.
pub(crate) struct DevLinear<E: Exec> {
    pub name: String,
    pub n: usize,
    pub k: usize,
    pub ldb: usize,
    pub w: E::Buf<i8>,
    pub wsum: E::Buf<i32>,
    pub w_scale: E::Buf<f32>,
    pub bias_f32: Option<E::Buf<f32>>,
    pub bias_i32: Option<E::Buf<i32>>,
    pub mode: ActMode,
    pub static_scale: Option<StaticScale<E>>,
}

impl<E: Exec> DevLinear<E> {
    /// Upload `layer` (its current activation quantization is captured).
    pub fn new(e: &E, layer: &QuantLinear) -> Result<Self> {
        let (n, k) = (layer.out_features(), layer.in_features());
        let ldb = padded_k(k);
        let raw = layer.packed().raw();
        let mut wp = vec![0i8; crate::error::checked_len("padded weights", n, ldb)?.max(1)];
        for j in 0..n {
            wp[j * ldb..j * ldb + k].copy_from_slice(&raw[j * k..(j + 1) * k]);
        }
        let ws: Vec<f32> = (0..n).map(|j| layer.weights().scale(j)).collect();
        let mode = match layer.activation_quant() {
            ActivationQuant::Dynamic {
                scheme,
                granularity,
            } => ActMode::Dynamic {
                scheme,
                per_row: granularity == Granularity::PerRow,
            },
            ActivationQuant::Static(p) => ActMode::Static(p),
        };
        let (bias_f32, bias_i32) = match (mode, layer.bias(), layer.bias_i32()) {
            (ActMode::Dynamic { .. }, Some(b), _) => (Some(e.upload(b)?), None),
            (ActMode::Static(_), _, Some(bq)) => (None, Some(e.upload(bq)?)),
            _ => (None, None),
        };
        let static_scale = match mode {
            ActMode::Static(p) => {
                let zp = if p.zero_point() != 0 {
                    Some(e.upload(&[p.zero_point()])?)
                } else {
                    None
                };
                Some((e.upload(&[p.scale()])?, zp))
            }
            ActMode::Dynamic { .. } => None,
        };
        Ok(DevLinear {
            name: layer.name().to_string(),
            n,
            k,
            ldb,
            w: e.upload(&wp)?,
            wsum: e.upload(&pad1(layer.packed().wsum()))?,
            w_scale: e.upload(&pad1(&ws))?,
            bias_f32,
            bias_i32,
            mode,
            static_scale,
        })
    }

    /// `out = x · Wᵀ + b` for device `x: [m, k]` into device `out: [m, n]`. Waits for the
    /// executor at the end to report non-finite input as `Err(NonFinite)` (the output is then
    /// left unwritten).
    pub fn forward(
        &self,
        e: &E,
        x: &E::Buf<f32>,
        m: usize,
        out: &mut DevOut<'_, E>,
    ) -> Result<Path> {
        let input = format!("{}.input", self.name);
        let mut status = e.upload(&[Status::CLEAR])?;
        let static_scale = self.static_scale.as_ref().map(|(s, z)| (s, z.as_ref()));
        let dq = quantize_activations(e, x, m, self.k, self.mode, static_scale, &mut status)?;
        let (scale_buf, zp_buf) = match &self.static_scale {
            Some((s, z)) => (s, z.as_ref()),
            None => (&dq.scales, dq.zps.as_ref()),
        };
        let bias = match (&self.bias_f32, &self.bias_i32) {
            (Some(b), _) => DevBias::F32(b),
            (None, Some(b)) => DevBias::I32(b),
            _ => DevBias::None,
        };
        let xq = match &dq.q {
            DevQ::S8(b) => DevAct::S8(b),
            DevQ::U8(b) => DevAct::U8(b),
        };
        let g = GemmDev {
            m,
            n: self.n,
            k: self.k,
            x: xq,
            lda: dq.ldq,
            w: &self.w,
            ldb: self.ldb,
            wsum: &self.wsum,
            w_scale: &self.w_scale,
            act_scale: scale_buf,
            per_row: dq.per_row,
            act_zp: zp_buf,
            bias,
            status: Some(&status),
        };
        let path = gemm(e, &g, out)?;
        check_status(e, &status, &input)?;
        Ok(path)
    }

    /// [`DevLinear::forward`] on host slices: uploads `x`, downloads into `out`.
    pub fn forward_host(&self, e: &E, x: &[f32], m: usize, out: &mut OutBuf<'_>) -> Result<Path> {
        let xl = crate::error::checked_len("input [m, in_features]", m, self.k)?;
        if x.len() != xl {
            return Err(Error::shape("input [m, in_features]", xl, x.len()));
        }
        let yl = crate::error::checked_len("output [m, out_features]", m, self.n)?;
        if out.len() != yl {
            return Err(Error::shape("output [m, n]", yl, out.len()));
        }
        check_out_kind(out.kind(), self.bias_f32.is_some())?;
        let xd = e.upload(&pad1(x))?;
        fn run<E: Exec, T: Elem>(
            l: &DevLinear<E>,
            e: &E,
            xd: &E::Buf<f32>,
            m: usize,
            y: &mut [T],
            wrap: impl FnOnce(&mut E::Buf<T>) -> DevOut<'_, E>,
        ) -> Result<Path> {
            let mut yd = e.alloc::<T>(y.len().max(1))?;
            let path = l.forward(e, xd, m, &mut wrap(&mut yd))?;
            e.read(&yd, y)?;
            Ok(path)
        }
        match out {
            OutBuf::I32(y) => run(self, e, &xd, m, y, |b| DevOut::I32(b)),
            OutBuf::F32(y) => run(self, e, &xd, m, y, |b| DevOut::F32(b)),
            OutBuf::F16(y) => run(self, e, &xd, m, y, |b| DevOut::F16(b)),
            OutBuf::Bf16(y) => run(self, e, &xd, m, y, |b| DevOut::Bf16(b)),
            OutBuf::I8(y, q) => {
                let q = *q;
                run(self, e, &xd, m, y, move |b| DevOut::I8(b, q))
            }
        }
    }
}

/// `v`, or one zero element when empty (device allocations are never empty).
fn pad1<T: Copy + Default>(v: &[T]) -> Vec<T> {
    if v.is_empty() {
        vec![T::default()]
    } else {
        v.to_vec()
    }
}
