//! gemm/cpu/x86/amx.rs — the AMX-INT8 microkernel (Sapphire Rapids and later): `tdpbusd` multiplies
//! a 16×64 `u8` tile by a 64×16 `s8` tile into 16×16 i32 accumulators, exactly (i32 adds, no
//! saturation). `s8` activations are fed as `x + 128` like the VNNI path. Stable Rust has no AMX
//! intrinsics, so the instructions are written with `asm!`; the OS must first grant the process
//! the tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which [`enable`] requests.
//!
//! Layouts: A is u8 in contiguous tiles — for each 16-row block, for each 64-deep k chunk, 16 rows
//! × 64 bytes (1 KiB) — rows padded to 32, `lda = 64·⌈k/64⌉`; a weight panel is `NR = 32` columns
//! as, per k chunk, two B tiles of 16 rows (k/4) × 64 bytes (16 columns × 4 k): 2 KiB per chunk,
//! contiguous. Every tile load is one aligned, contiguous KiB (an unaligned tile load measured
//! 6× slower here). The tile is 32 rows × 32 columns: C in tmm0–3, A in tmm4–5, B in tmm6–7.
//! The tile configuration is loaded once per task (`ldtilecfg` drains the AMX pipeline; per tile
//! it cost a quarter of the kernel's time).

use std::arch::asm;

use crate::gemm::cpu::{AElem, AlignedBuf, Kernel, PreparedA};

const MR: usize = 32;
const NR: usize = 32;
/// Bytes of k per chunk (one A tile row).
const KC: usize = 64;
/// Bytes per A or B tile.
const BTILE: usize = 16 * 64;
const ATILE: usize = BTILE;

/// Ask Linux for the AMX tile-data state and check that the CPU has AMX-TILE and AMX-INT8.
pub(super) fn enable() -> Result<(), String> {
    use std::arch::x86_64::__cpuid_count;
    // cpuid leaf 7 exists on every x86-64 CPU that reports AVX-512 (checked by the caller).
    let edx = __cpuid_count(7, 0).edx;
    if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
        return Err("CPU lacks AMX-TILE/AMX-INT8".into());
    }
    request_tile_permission()
}

#[cfg(target_os = "linux")]
fn request_tile_permission() -> Result<(), String> {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain Linux x86-64 syscall: arguments in rdi/rsi, result in rax, and the kernel
    // clobbers rcx and r11. arch_prctl(ARCH_REQ_XCOMP_PERM) only changes this process's permission
    // to use the AMX register state; it touches no memory of ours.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret != 0 {
        return Err(format!(
            "the kernel refused AMX tile data (arch_prctl returned {ret})"
        ));
    }
    // SAFETY: xgetbv(0) is available where the OS enabled XSAVE, which AVX-512 requires.
    let xcr0 = unsafe { std::arch::x86_64::_xgetbv(0) };
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return Err("the OS has not enabled the AMX state in XCR0".into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> Result<(), String> {
    Err("AMX is only enabled on Linux (arch_prctl tile permission)".into())
}

/// The 64-byte `ldtilecfg` operand: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    _reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = {
    let mut colsb = [0u16; 16];
    let mut rows = [0u8; 16];
    let mut t = 0;
    while t < 8 {
        colsb[t] = 64;
        rows[t] = 16;
        t += 1;
    }
    TileConfig {
        palette: 1,
        start_row: 0,
        _reserved: [0; 14],
        colsb,
        rows,
    }
};

#[derive(Debug)]
pub(crate) struct AmxKernel {
    b: AlignedBuf,
    chunks: usize,
}

impl AmxKernel {
    pub(crate) fn pack(w: &[i8], n: usize, k: usize) -> Self {
        let chunks = k.div_ceil(KC);
        let panels = n.div_ceil(NR);
        let panel_len = chunks * 2 * BTILE;
        let mut b = AlignedBuf::zeroed(panels * panel_len);
        let dst: &mut [i8] = b.as_mut_slice();
        for j in 0..n {
            let (p, t, c) = (j / NR, (j % NR) / 16, j % 16);
            for kk in 0..k {
                let (q, r, s) = (kk / KC, (kk % KC) / 4, kk % 4);
                dst[p * panel_len + q * 2 * BTILE + t * BTILE + r * 64 + c * 4 + s] = w[j * k + kk];
            }
        }
        AmxKernel { b, chunks }
    }
}

impl Kernel for AmxKernel {
    fn mr(&self) -> usize {
        MR
    }
    fn nr(&self) -> usize {
        NR
    }
    fn a_elem(&self) -> AElem {
        AElem::U8
    }
    fn lda(&self, k: usize) -> usize {
        let _ = k;
        self.chunks * KC
    }
    fn a_tiled(&self) -> bool {
        true
    }
    fn begin_task(&self) {
        // SAFETY: ldtilecfg reads the 64-byte CONFIG; AMX was enabled (`enable`) before this
        // kernel could be built. The configuration is thread state that only this kernel uses.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
    }
    fn end_task(&self) {
        // SAFETY: releases this thread's tile state; no tile is live between tasks.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
    fn tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize, acc: &mut [i32]) {
        self.start_tile(a, i0, rows, panel);
        self.finish_tile(rows, acc);
    }
    fn pipelined(&self) -> bool {
        true
    }
    fn start_tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize) {
        let av: &[u8] = a.buf.as_slice();
        let bv: &[i8] = self.b.as_slice();
        let panel_len = self.chunks * 2 * BTILE;
        assert!((1..=MR).contains(&rows) && a.lda == self.chunks * KC);
        assert!(i0.is_multiple_of(MR) && (i0 + MR) * a.lda <= av.len());
        assert!((panel + 1) * panel_len <= bv.len());
        // Row block i0 / 16 starts at i0 · lda bytes in the tiled layout (16 rows × lda).
        let (ap, bp) = (av[i0 * a.lda..].as_ptr(), bv[panel * panel_len..].as_ptr());
        // SAFETY: every tile load reads one contiguous KiB at stride 64: A tiles of row blocks
        // i0/16 and i0/16 + 1 (inside the buffer padded to a multiple of 32 rows), B tiles inside
        // the panel. All asserted above. The kernel is only built after `enable` confirmed AMX and
        // obtained the OS permission, and `begin_task` has loaded the tile configuration on this
        // thread.
        unsafe {
            if rows <= 16 {
                compute_16(ap, bp, self.chunks)
            } else {
                compute_32(ap, a.lda, bp, self.chunks)
            }
        }
    }
    fn finish_tile(&self, rows: usize, acc: &mut [i32]) {
        assert!(acc.len() >= MR * NR);
        // SAFETY: stores 16 (rows ≤ 16) or 32 rows × 32 i32 at row stride NR·4 bytes into `acc`,
        // which holds MR × NR; the tiles hold the accumulators `start_tile` computed.
        unsafe { store(acc.as_mut_ptr(), rows > 16) }
    }
}

/// Rows 0..16 of the tile: C in tmm0, tmm1.
unsafe fn compute_16(a: *const u8, b: *const i8, chunks: usize) {
    asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
    for q in 0..chunks {
        asm!(
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{b} + {s}*1]",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            a = in(reg) a.add(q * ATILE),
            b = in(reg) b.add(q * 2 * BTILE),
            b1 = in(reg) b.add(q * 2 * BTILE + BTILE),
            s = in(reg) 64usize,
            options(nostack, readonly),
        );
    }
}

/// All 32 rows of the tile: C in tmm0–3.
unsafe fn compute_32(a: *const u8, lda: usize, b: *const i8, chunks: usize) {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
    for q in 0..chunks {
        asm!(
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{b} + {s}*1]",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a2} + {s}*1]",
            "tdpbusd tmm2, tmm5, tmm6",
            "tdpbusd tmm3, tmm5, tmm7",
            a = in(reg) a.add(q * ATILE),
            a2 = in(reg) a.add(16 * lda + q * ATILE),
            b = in(reg) b.add(q * 2 * BTILE),
            b1 = in(reg) b.add(q * 2 * BTILE + BTILE),
            s = in(reg) 64usize,
            options(nostack, readonly),
        );
    }
}

/// Store tmm0, tmm1 (and tmm2, tmm3 when `all_32`) as a 32-column i32 tile at `c`.
unsafe fn store(c: *mut i32, all_32: bool) {
    let ldc = NR * 4;
    asm!(
        "tilestored [{c0} + {ldc}*1], tmm0",
        "tilestored [{c1} + {ldc}*1], tmm1",
        c0 = in(reg) c,
        c1 = in(reg) c.add(16),
        ldc = in(reg) ldc,
        options(nostack),
    );
    if all_32 {
        asm!(
            "tilestored [{c2} + {ldc}*1], tmm2",
            "tilestored [{c3} + {ldc}*1], tmm3",
            c2 = in(reg) c.add(16 * NR),
            c3 = in(reg) c.add(16 * NR + 16),
            ldc = in(reg) ldc,
            options(nostack),
        );
    }
}
