//! cuda/sim_mma_tests.rs — the tensor-core path in the host simulation (test builds): first the
//! simulation's own `ldmatrix`, `mma.sync.m16n8k32` and `cp.async` against the PTX ISA's
//! documented layouts and semantics (transcribed again here, independently of `sim.h`, on small
//! operands whose elements are all distinct), then every block tile of `kernels/gemm_mma.cu`
//! through `cuda::ops` against `reference.rs`, bit for bit: shapes around every tile edge, every
//! activation case and output kind, split-K at several factors, both `cp.async` timings, zero
//! bank conflicts; and the path choice (architecture, alignment, forcing) and the dispatch table.

use super::exec::Exec;
use super::ops::{
    self, DevAct, DevBias, DevOut, GemmDev, GemmKernel, GemvVariant, MmaConfig, MmaTile,
};
use super::ops::{mma_dispatch, MmaLaunch, ScratchCache};
use super::sim::{self, SimExec, SimStats, CP_ASYNC_EARLY};
use super::sim_tests::{check_gemm_on, ActCase, BiasCase, Rng};
use crate::gemm::Path;

// ---------------------------------------------------------------------------------------------
// The PTX ISA layouts, transcribed from "Matrix Fragments for mma.m16n8k32" (.s8 / .u8) and
// "Warp-level matrix load instruction: ldmatrix".
// ---------------------------------------------------------------------------------------------

/// (row, col) of element `i` (byte i % 4 of register i / 4) of `lane`'s A fragment (16 × 32).
pub(super) fn a_pos(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    let row = if i < 4 || (8..12).contains(&i) {
        g
    } else {
        g + 8
    };
    let col = t * 4 + (i & 3) + if i >= 8 { 16 } else { 0 };
    (row, col)
}

/// (row, col) of element `i` of `lane`'s B fragment (32 × 8).
pub(super) fn b_pos(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (t * 4 + (i & 3) + if i >= 4 { 16 } else { 0 }, g)
}

/// (row, col) of element `i` of `lane`'s C / D fragment (16 × 8).
pub(super) fn c_pos(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (g + if i >= 2 { 8 } else { 0 }, t * 2 + (i & 1))
}

/// A's registers for every lane: `a[lane][r]`, byte b = element 4r + b.
fn pack_a(a: &[[u8; 32]; 16]) -> Vec<[u32; 4]> {
    (0..32)
        .map(|lane| {
            let mut r = [0u32; 4];
            for i in 0..16 {
                let (row, col) = a_pos(lane, i);
                r[i / 4] |= (a[row][col] as u32) << (8 * (i % 4));
            }
            r
        })
        .collect()
}

fn pack_b(b: &[[i8; 8]; 32]) -> Vec<[u32; 2]> {
    (0..32)
        .map(|lane| {
            let mut r = [0u32; 2];
            for i in 0..8 {
                let (row, col) = b_pos(lane, i);
                r[i / 4] |= (b[row][col] as u8 as u32) << (8 * (i % 4));
            }
            r
        })
        .collect()
}

fn pack_c(c: &[[i32; 8]; 16]) -> Vec<[i32; 4]> {
    (0..32)
        .map(|lane| std::array::from_fn(|i| c[c_pos(lane, i).0][c_pos(lane, i).1]))
        .collect()
}

fn unpack_d(d: &[[i32; 4]]) -> [[i32; 8]; 16] {
    let mut out = [[0i32; 8]; 16];
    for (lane, regs) in d.iter().enumerate() {
        for (i, &v) in regs.iter().enumerate() {
            let (row, col) = c_pos(lane, i);
            out[row][col] = v;
        }
    }
    out
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct MmaTestParams {
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    u8: i32,
    tiles: i32,
    mode: i32,
    pad: i32,
}

/// `[lane][i][j]` D of the simulated `mma_16832<MT, NT>` for per-lane A (`a[lane][i]`), B
/// (`b[lane][j]`) and C (`c[lane][i][j]`) registers: MT × NT = 1 × 1 (`tiles` 1) or 2 × 3.
fn run_mma(
    a: &[[[u32; 4]; 2]; 32],
    b: &[[[u32; 2]; 3]; 32],
    c: &[[[[i32; 4]; 3]; 2]; 32],
    u8: bool,
    tiles: i32,
) -> Box<[[[[i32; 4]; 3]; 2]; 32]> {
    run_mma_mode(a, b, c, u8, tiles, 0)
}

/// [`run_mma`] with selftest.cu's `mode`: bit 0 through sm_75's four `m8n8k16` per `m16n8k32`
/// (`mma_16832_by_8816`), bit 1 B unsigned.
fn run_mma_mode(
    a: &[[[u32; 4]; 2]; 32],
    b: &[[[u32; 2]; 3]; 32],
    c: &[[[[i32; 4]; 3]; 2]; 32],
    u8: bool,
    tiles: i32,
    mode: i32,
) -> Box<[[[[i32; 4]; 3]; 2]; 32]> {
    let mut d = Box::new([[[[0i32; 4]; 3]; 2]; 32]);
    let p = MmaTestParams {
        a: a.as_ptr() as u64,
        b: b.as_ptr() as u64,
        c: c.as_ptr() as u64,
        d: d.as_mut_ptr() as u64,
        u8: i32::from(u8),
        tiles,
        mode,
        pad: 0,
    };
    // SAFETY: a, b, c, d hold 32 lanes × 2 × 4, × 3 × 2, × 2 × 3 × 4 values, as the kernel reads
    // and writes them, and outlive the (synchronous) launch.
    let st = unsafe {
        sim::lib().launch_raw(
            "sim_selftest_mma",
            [1, 1, 1],
            [32, 1, 1],
            0,
            0,
            bytemuck::bytes_of(&p),
            false,
        )
    }
    .unwrap();
    let per = if mode & 1 == 1 { 4 } else { 1 };
    assert_eq!(st.mma, per * if tiles == 1 { 1 } else { 6 });
    d
}

/// One simulated m16n8k32 on full matrices (laid out per the ISA above), D returned as a matrix.
fn mma_once(a: &[[u8; 32]; 16], b: &[[i8; 8]; 32], c: &[[i32; 8]; 16], u8: bool) -> [[i32; 8]; 16] {
    let (pa, pb, pc) = (pack_a(a), pack_b(b), pack_c(c));
    let mut ra = [[[0u32; 4]; 2]; 32];
    let mut rb = [[[0u32; 2]; 3]; 32];
    let mut rc = [[[[0i32; 4]; 3]; 2]; 32];
    for lane in 0..32 {
        ra[lane][0] = pa[lane];
        rb[lane][0] = pb[lane];
        rc[lane][0][0] = pc[lane];
    }
    let d = run_mma(&ra, &rb, &rc, u8, 1);
    let d0: Vec<[i32; 4]> = (0..32).map(|l| d[l][0][0]).collect();
    unpack_d(&d0)
}

/// D = A · B + C with i32 wrap-around, A read as u8 or s8.
fn mma_reference(
    a: &[[u8; 32]; 16],
    b: &[[i8; 8]; 32],
    c: &[[i32; 8]; 16],
    u8: bool,
) -> [[i32; 8]; 16] {
    let mut d = *c;
    for (i, row) in d.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            for k in 0..32 {
                let av = if u8 {
                    a[i][k] as i32
                } else {
                    a[i][k] as i8 as i32
                };
                *v = v.wrapping_add(av * b[k][j] as i32);
            }
        }
    }
    d
}

#[test]
fn simulated_mma_places_every_a_element_where_the_isa_says() {
    // B selects column 4j + s of A into column j of D (B[k][j] = [k == 4j + s]), so the four
    // runs s = 0..3 show every A element at its documented place. A's values are distinct
    // modulo 251 (run 1) and modulo 241 (run 2): an element placed elsewhere shows in both.
    for modulus in [251usize, 241] {
        let mut a = [[0u8; 32]; 16];
        for (i, row) in a.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                *v = ((i * 32 + k) % modulus) as u8;
            }
        }
        for s in 0..4 {
            let mut b = [[0i8; 8]; 32];
            for j in 0..8 {
                b[4 * j + s][j] = 1;
            }
            for u8 in [false, true] {
                let d = mma_once(&a, &b, &[[0; 8]; 16], u8);
                for i in 0..16 {
                    for j in 0..8 {
                        let want = if u8 {
                            a[i][4 * j + s] as i32
                        } else {
                            a[i][4 * j + s] as i8 as i32
                        };
                        assert_eq!(d[i][j], want, "A[{i}][{}] (u8 {u8})", 4 * j + s);
                    }
                }
            }
        }
    }
}

#[test]
fn simulated_mma_places_every_b_c_d_element_where_the_isa_says() {
    // B's 256 elements are all distinct i8 values; A = [k == i + 16 s] brings row i + 16 s of B
    // into row i of D. Then A = 0 shows D = C element by element (C all distinct).
    let mut b = [[0i8; 8]; 32];
    for (k, row) in b.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = ((k * 8 + j) as i32 - 128) as i8;
        }
    }
    for s in 0..2 {
        let mut a = [[0u8; 32]; 16];
        for (i, row) in a.iter_mut().enumerate() {
            row[i + 16 * s] = 1;
        }
        let d = mma_once(&a, &b, &[[0; 8]; 16], false);
        for i in 0..16 {
            for j in 0..8 {
                assert_eq!(d[i][j], b[i + 16 * s][j] as i32, "B[{}][{j}]", i + 16 * s);
            }
        }
    }
    let mut c = [[0i32; 8]; 16];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (i * 8 + j) as i32 * 1_000_003 - 7;
        }
    }
    assert_eq!(mma_once(&[[0; 32]; 16], &b, &c, false), c);
}

/// Run test `name` of this test binary alone in a child process with `env` = `value` (for
/// launches the simulation is expected to abort, which ends its process): whether the child
/// succeeded, and its standard error.
pub(crate) fn run_test_in_child(name: &str, env: &str, value: &str) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(env, value)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
    )
}

/// sim.h's shared-window address of the first byte of dynamic shared memory (`SMEM_WINDOW`):
/// 16-byte aligned, not 1024-byte aligned.
const SIM_SMEM_WINDOW: u32 = 0x490;

/// One simulated `wgmma.mma_async.m64n128k32` (sim_selftest_wgmma): `smem` is placed at window
/// address `window` (16-byte aligned), the descriptors are passed raw; returns the 128 threads'
/// 64 accumulators, or the launch's error.
#[allow(clippy::too_many_arguments)]
fn wgmma_once(
    smem: &[u8],
    window: u32,
    da: u64,
    db: u64,
    c0: i32,
    accumulate: bool,
    a_u8: bool,
    mode: i32,
) -> crate::error::Result<Vec<i32>> {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct WgmmaTestParams {
        init: u64,
        out: u64,
        da: u64,
        db: u64,
        bytes: i32,
        at: i32,
        c0: i32,
        accumulate: i32,
        a_u8: i32,
        mode: i32,
    }
    // A 16-byte-aligned copy of the bytes for the 16-byte cp.async (a Vec<u8> need not be).
    let words: Vec<u128> = smem
        .chunks(16)
        .map(|c| {
            let mut b = [0u8; 16];
            b[..c.len()].copy_from_slice(c);
            u128::from_le_bytes(b)
        })
        .collect();
    let mut out = vec![0i32; 128 * 64];
    let at = window - SIM_SMEM_WINDOW;
    let p = WgmmaTestParams {
        init: words.as_ptr() as u64,
        out: out.as_mut_ptr() as u64,
        da,
        db,
        bytes: (words.len() * 16) as i32,
        at: at as i32,
        c0,
        accumulate: accumulate as i32,
        a_u8: a_u8 as i32,
        mode,
    };
    // SAFETY: `words` holds `bytes` readable bytes, `out` 128 × 64 i32, both outliving the
    // (synchronous) launch; the kernel writes only `out` and its shared memory, sized here to
    // hold `at + bytes`.
    unsafe {
        sim::lib().launch_raw(
            "sim_selftest_wgmma",
            [1, 1, 1],
            [128, 1, 1],
            at + (words.len() * 16) as u32,
            0,
            bytemuck::bytes_of(&p),
            false,
        )
    }?;
    Ok(out)
}

/// A K-major operand of `rows` rows × 128 k bytes as the 128-byte swizzle stores it from window
/// address `base` (1024-byte aligned): byte (r, b) at address base + 128 r + b with address bits
/// 4–6 exclusive-ored with bits 7–9 (PTX ISA, "Shared Memory Matrix Layout", 128B swizzling).
fn swizzle128(rows: usize, base: u32, value: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    assert_eq!(base % 1024, 0);
    let mut out = vec![0u8; rows * 128];
    for r in 0..rows {
        for b in 0..128 {
            let a = base + (128 * r + b) as u32;
            let phys = a ^ (((a >> 7) & 7) << 4);
            out[(phys - base) as usize] = value(r, b);
        }
    }
    out
}

/// The 128-byte-swizzle, K-major matrix descriptor: start address, leading offset 1 (unused),
/// stride offset `sbo` between 8-row groups, swizzle mode 1.
fn desc_sw128(addr: u32, sbo: u32) -> u64 {
    ((addr as u64 & 0x3ffff) >> 4) | (1 << 16) | (((sbo as u64) >> 4) << 32) | (1 << 62)
}

#[test]
fn simulated_wgmma_reads_swizzled_operands_and_writes_the_isa_accumulator_layout() {
    // A (64 × 128 bytes) at window 0x800, B (128 × 128) after it, both laid out by `swizzle128`
    // from the ISA's description; every k step (start address + 32 kk) of one m64n128k32 must
    // give D[r][c] = C + Σ_k A[r][32 kk + k] · B[c][32 kk + k], found in thread t's element i
    // at row 16 (t / 32) + (t % 32) / 4 + 8 ((i % 4) / 2), column 8 (i / 4) + 2 (t % 4) + i % 2
    // ("Matrix fragment for accumulator D" of wgmma .m64nNk32).
    let (a_base, b_base) = (0x800u32, 0x800u32 + 64 * 128);
    let av = |r: usize, b: usize| ((r * 131 + b * 7 + 3) % 256) as u8;
    let bv = |c: usize, b: usize| ((c * 17 + b * 29 + 11) % 256) as u8;
    let mut smem = swizzle128(64, a_base, av);
    smem.extend(swizzle128(128, b_base, bv));
    for kk in 0..4u32 {
        for (a_u8, accumulate) in [(false, true), (true, false)] {
            let out = wgmma_once(
                &smem,
                a_base,
                desc_sw128(a_base + 32 * kk, 1024),
                desc_sw128(b_base + 32 * kk, 1024),
                -77_000,
                accumulate,
                a_u8,
                0,
            )
            .unwrap();
            for t in 0..128 {
                for i in 0..64 {
                    let row = 16 * (t / 32) + (t % 32) / 4 + 8 * ((i % 4) / 2);
                    let col = 8 * (i / 4) + 2 * (t % 4) + i % 2;
                    let mut want: i32 = if accumulate { -77_000 } else { 0 };
                    for k in 0..32 {
                        let b = 32 * kk as usize + k;
                        let a = if a_u8 {
                            av(row, b) as i32
                        } else {
                            av(row, b) as i8 as i32
                        };
                        want += a * bv(col, b) as i8 as i32;
                    }
                    assert_eq!(
                        out[t * 64 + i],
                        want,
                        "k step {kk}, u8 {a_u8}: thread {t} element {i} (D[{row}][{col}])"
                    );
                }
            }
        }
    }
}

#[test]
fn simulated_wgmma_aborts_on_what_the_isa_leaves_undefined() {
    // Each left-out step, and a swizzle mode the emulation does not model, aborts the simulated
    // launch with its reason (a kernel written that way would be wrong, or untested, on the GPU).
    // The simulation aborts its process on a kernel fault, so each case runs in a child process
    // (this test binary, this test alone); the complete instruction runs here.
    const CHILD: &str = "INT8RT_SIM_WGMMA_CHILD";
    const NAME: &str =
        "cuda::sim_mma_tests::simulated_wgmma_aborts_on_what_the_isa_leaves_undefined";
    let a_base = 0x800u32;
    let smem = vec![1u8; 192 * 128];
    let (da, db) = (
        desc_sw128(a_base, 1024),
        desc_sw128(a_base + 64 * 128, 1024),
    );
    let no_swizzle = db & !(3u64 << 62);
    let cases = [
        (1, db, "without a wgmma.fence"),
        (2, db, "without a fence.proxy.async"),
        (3, db, "exits with wgmma.mma_async in flight"),
        (0, no_swizzle, "only the 128-byte swizzle mode is emulated"),
    ];
    if let Ok(i) = std::env::var(CHILD) {
        let (mode, db, _) = cases[i.parse::<usize>().unwrap()];
        let r = wgmma_once(&smem, a_base, da, db, 0, true, false, mode);
        eprintln!("the launch returned: {:?}", r.map(|v| v[0]));
        std::process::exit(0);
    }
    for (i, &(mode, _, why)) in cases.iter().enumerate() {
        let (ok, err) = run_test_in_child(NAME, CHILD, &i.to_string());
        assert!(!ok && err.contains(why), "mode {mode}: {err}");
    }
    // The same instruction, complete: Σ of 32 products 1 · 1 per element.
    let out = wgmma_once(&smem, a_base, da, db, 0, false, false, 0).unwrap();
    assert!(out.iter().all(|&v| v == 32), "{:?}", &out[..8]);
}

#[test]
fn simulated_mma_sums_wrap_and_batches_equal_single_instructions() {
    let mut rng = Rng::new(31);
    let mut byte = || rng.int(0, 255) as u8;
    let a: [[u8; 32]; 16] = std::array::from_fn(|_| std::array::from_fn(|_| byte()));
    let b: [[i8; 8]; 32] = std::array::from_fn(|_| std::array::from_fn(|_| byte() as i8));
    // C near the i32 limits: the s32 sums wrap (no .satfinite).
    let c: [[i32; 8]; 16] = std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            if (i + j) % 2 == 0 {
                i32::MAX - 5
            } else {
                i32::MIN + 3
            }
        })
    });
    for u8 in [false, true] {
        assert_eq!(
            mma_once(&a, &b, &c, u8),
            mma_reference(&a, &b, &c, u8),
            "u8 {u8}"
        );
    }
    // A batch of 2 × 3 instructions sharing A fragments (rows) and B fragments (columns).
    let mut rng = Rng::new(32);
    let mut byte = || rng.int(0, 255) as u8;
    let aa: [[[u8; 32]; 16]; 2] =
        std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| byte())));
    let bb: [[[i8; 8]; 32]; 3] =
        std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| byte() as i8)));
    let cc: [[[[i32; 8]; 16]; 3]; 2] = std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            std::array::from_fn(|r| {
                std::array::from_fn(|col| (i * 1000 + j * 100 + r * 8 + col) as i32)
            })
        })
    });
    let mut ra = [[[0u32; 4]; 2]; 32];
    let mut rb = [[[0u32; 2]; 3]; 32];
    let mut rc = [[[[0i32; 4]; 3]; 2]; 32];
    for i in 0..2 {
        for (lane, r) in pack_a(&aa[i]).into_iter().enumerate() {
            ra[lane][i] = r;
        }
    }
    for j in 0..3 {
        for (lane, r) in pack_b(&bb[j]).into_iter().enumerate() {
            rb[lane][j] = r;
        }
    }
    for i in 0..2 {
        for j in 0..3 {
            for (lane, r) in pack_c(&cc[i][j]).into_iter().enumerate() {
                rc[lane][i][j] = r;
            }
        }
    }
    for u8 in [false, true] {
        let d = run_mma(&ra, &rb, &rc, u8, 6);
        for i in 0..2 {
            for j in 0..3 {
                let dij: Vec<[i32; 4]> = (0..32).map(|l| d[l][i][j]).collect();
                assert_eq!(
                    unpack_d(&dij),
                    mma_reference(&aa[i], &bb[j], &cc[i][j], u8),
                    "batch element ({i}, {j}), u8 {u8}"
                );
            }
        }
    }
}

#[test]
fn sm75_m8n8k16_decomposition_gives_the_m16n8k32_bits() {
    // sm_75 has no m16n8k32: the tensor-core kernels' Turing build runs each as four m8n8k16 on
    // the same registers (common.cuh `mma_16832_by_8816`). The m8n8k16 emulation (sim.h
    // `mma_8816`, from that instruction's own ISA layouts) composed that way must give the
    // m16n8k32 emulation's bits — checked against the reference in the tests above — for random
    // registers and C near the i32 limits, single and batched, for every operand signedness a
    // kernel uses (A u8 or s8 with B s8; A s8 with B u8).
    let mut rng = Rng::new(75);
    let mut word = || rng.next() as u32;
    let ra: [[[u32; 4]; 2]; 32] =
        std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| word())));
    let rb: [[[u32; 2]; 3]; 32] =
        std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| word())));
    let rc: [[[[i32; 4]; 3]; 2]; 32] = std::array::from_fn(|lane| {
        std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                std::array::from_fn(|e| match (lane + i + j + e) % 3 {
                    0 => i32::MAX - (e as i32),
                    1 => i32::MIN + (j as i32),
                    _ => (lane * 7919 + e) as i32 - 50_000,
                })
            })
        })
    });
    for tiles in [1, 6] {
        for (u8, b_u8) in [(false, false), (true, false), (false, true)] {
            let types = if b_u8 { 2 } else { 0 };
            let direct = run_mma_mode(&ra, &rb, &rc, u8, tiles, types);
            let via = run_mma_mode(&ra, &rb, &rc, u8, tiles, types | 1);
            assert_eq!(direct, via, "tiles {tiles}, A u8 {u8}, B u8 {b_u8}");
            // (the sums differ from C: the products were not dropped)
            assert_ne!(direct[0], rc[0], "tiles {tiles}");
        }
    }
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct LdsmTestParams {
    init: u64,
    rows: u64,
    out: u64,
    out2: u64,
    bytes: i32,
    num: i32,
}

#[test]
fn simulated_ldmatrix_follows_the_isa_and_counts_bank_conflicts() {
    // 1 KiB of shared memory whose 16-bit elements are all distinct. Two row layouts: rows in
    // distinct bank groups within each matrix (no conflict), and each matrix's 8 rows in one bank
    // group (8 wavefronts instead of 1). The second instruction of the batch takes the row
    // addresses rotated by one lane.
    let smem: Vec<u8> = (0..512u32)
        .flat_map(|i| (((i * 37) % 512) as u16 + 1000).to_le_bytes())
        .collect();
    let layouts: [(&str, Vec<u32>); 2] = [
        (
            "spread",
            (0..32u32).map(|i| ((i * 5 + 3) % 32) * 16).collect(),
        ),
        (
            "one bank group per matrix",
            (0..32u32).map(|i| (i % 8) * 128 + (i / 8) * 16).collect(),
        ),
    ];
    for (name, rows) in &layouts {
        for num in [1usize, 2, 4] {
            let mut out = [0u32; 128];
            let mut out2 = [0u32; 128];
            let p = LdsmTestParams {
                init: smem.as_ptr() as u64,
                rows: rows.as_ptr() as u64,
                out: out.as_mut_ptr() as u64,
                out2: out2.as_mut_ptr() as u64,
                bytes: smem.len() as i32,
                num: num as i32,
            };
            // SAFETY: init holds `bytes` bytes, rows 32 offsets inside them (16-byte aligned),
            // out / out2 32 × 4 words; all outlive the synchronous launch.
            let st = unsafe {
                sim::lib().launch_raw(
                    "sim_selftest_ldmatrix",
                    [1, 1, 1],
                    [32, 1, 1],
                    smem.len() as u32,
                    0,
                    bytemuck::bytes_of(&p),
                    false,
                )
            }
            .unwrap();
            let word = |off: usize| u32::from_le_bytes(smem[off..off + 4].try_into().unwrap());
            for (inst, got, rot) in [(1, &out, 0usize), (2, &out2, 1)] {
                for lane in 0..32 {
                    for m in 0..num {
                        // Matrix m's row lane / 4 is addressed by thread 8 m + lane / 4; this
                        // lane receives its bytes 4 (lane % 4) .. + 3.
                        let src_thread = 8 * m + lane / 4;
                        let row = rows[(src_thread + rot) % 32] as usize;
                        assert_eq!(
                            got[lane * 4 + m],
                            word(row + 4 * (lane % 4)),
                            "{name} .x{num} instruction {inst} lane {lane} matrix {m}"
                        );
                    }
                }
            }
            let extra = if name.starts_with("spread") {
                0
            } else {
                num as u64 * (7 + 6)
            };
            assert_eq!(
                (st.ldmatrix, st.smem_extra_wavefronts),
                (2, extra),
                "{name} .x{num}"
            );
        }
    }
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct CpAsyncTestParams {
    src: u64,
    src_bytes: u64,
    out: u64,
}

#[test]
fn simulated_cp_async_zero_fills_and_completes_groups_in_order() {
    // Three commit groups per lane; group 0 copies lane % 17 bytes (0..16) and zero-fills the
    // rest. `wait_group N` completes all but the N most recent groups: in the late mode exactly
    // those have landed (untouched shared memory reads 0xCD), in the early mode all of them.
    let src: Vec<u8> = (0..3 * 32 * 16u32)
        .map(|i| ((i * 7 + 1) % 251) as u8)
        .collect();
    let src_bytes: Vec<i32> = (0..32).map(|l| l % 17).collect();
    for flags in [0, CP_ASYNC_EARLY] {
        let mut out = vec![0u8; 3 * 3 * 32 * 16];
        let p = CpAsyncTestParams {
            src: src.as_ptr() as u64,
            src_bytes: src_bytes.as_ptr() as u64,
            out: out.as_mut_ptr() as u64,
        };
        // SAFETY: src holds 3 × 32 × 16 bytes (16-byte aligned rows: a Vec<u8> of this size is
        // allocated 16-byte aligned by the system allocator, and the simulation checks), src_bytes
        // 32 counts, out 3 × 3 × 32 × 16 bytes; all outlive the launch.
        let st = unsafe {
            sim::lib().launch_raw(
                "sim_selftest_cp_async",
                [1, 1, 1],
                [32, 1, 1],
                3 * 32 * 16,
                flags,
                bytemuck::bytes_of(&p),
                false,
            )
        }
        .unwrap();
        assert_eq!(st.cp_async, 3 * 32);
        for step in 0..3 {
            for grp in 0..3 {
                let landed = flags == CP_ASYNC_EARLY || grp <= step;
                for lane in 0..32 {
                    for b in 0..16 {
                        let got = out[((step * 3 + grp) * 32 + lane) * 16 + b];
                        let want = if !landed {
                            0xCD
                        } else if grp == 0 && b as i32 >= src_bytes[lane] {
                            0
                        } else {
                            src[(grp * 32 + lane) * 16 + b]
                        };
                        assert_eq!(
                            got,
                            want,
                            "flags {flags} after wait_group {} group {grp} lane {lane} byte {b}",
                            2 - step
                        );
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tensor-core GEMM vs the reference.
// ---------------------------------------------------------------------------------------------

const ACTS: [ActCase; 4] = [
    ActCase::S8Tensor,
    ActCase::U8Tensor,
    ActCase::S8Rows,
    ActCase::U8Rows,
];
const BIASES: [BiasCase; 3] = [BiasCase::None, BiasCase::I32, BiasCase::F32];

fn forced(tile: MmaTile, splits: u32) -> GemmKernel {
    GemmKernel::Mma(Some(MmaConfig { tile, splits }))
}

/// The activation case `ACTS[a % 4]` and the bias case `BIASES[b % 3]`: how the loops below
/// vary both over their shapes.
fn case(a: usize, b: usize) -> (ActCase, BiasCase) {
    (ACTS[a % 4], BIASES[b % 3])
}

/// One launch of `kernel` on the tensor-core path at `m × n × k`, rows aligned, bit-checked
/// against the reference (`check_gemm_on`); `extreme`: every operand at its extreme instead of
/// random.
fn check_mma(
    e: &SimExec,
    kernel: GemmKernel,
    rng: &mut Rng,
    (m, n, k): (usize, usize, usize),
    (act, bias): (ActCase, BiasCase),
    extreme: bool,
) {
    check_gemm_on(
        e,
        kernel,
        Path::CudaMma,
        rng,
        m,
        n,
        k,
        act,
        bias,
        true,
        extreme,
    );
}

/// [`check_mma`] of `tile` forced at each `(m, n, k, splits)` of `shapes`, the `i`-th with the
/// activation and bias cases `cases(i)`.
fn check_tile_shapes(
    e: &SimExec,
    tile: MmaTile,
    rng: &mut Rng,
    shapes: &[(usize, usize, usize, u32)],
    cases: impl Fn(usize) -> (ActCase, BiasCase),
) {
    for (i, &(m, n, k, splits)) in shapes.iter().enumerate() {
        check_mma(e, forced(tile, splits), rng, (m, n, k), cases(i), false);
    }
}

/// A forced launch: the tile, `m`, `n`, `k` and the split-K factor.
type Forced = (MmaTile, usize, usize, usize, u32);

/// [`check_mma`] of each row of `rows` forced, the `i`-th with the cases `case(i, i)`, then
/// `after(row)` (the caller's statistics and launch checks).
fn check_forced_rows(e: &SimExec, rng: &mut Rng, rows: &[Forced], mut after: impl FnMut(Forced)) {
    for (i, &row) in rows.iter().enumerate() {
        let (tile, m, n, k, splits) = row;
        check_mma(e, forced(tile, splits), rng, (m, n, k), case(i, i), false);
        after(row);
    }
}

/// The statistics of the tensor-core launches since the last call: some ldmatrix, mma and
/// cp.async ran, and no ldmatrix had a bank conflict.
fn assert_tensor_core_stats(e: &SimExec, what: &str) -> SimStats {
    let st = e.take_stats();
    assert!(
        st.mma > 0 && st.ldmatrix > 0 && st.cp_async > 0,
        "{what}: {st:?}"
    );
    assert_eq!(
        st.smem_extra_wavefronts, 0,
        "{what}: ldmatrix bank conflicts ({st:?})"
    );
    st
}

/// The statistics of weight-streaming tile launches since the last call: mma fed by warp-wide
/// 16-byte shared loads of activations that cp.async staged, no ldmatrix (the weights come
/// straight from global memory), and no bank conflict.
fn assert_stream_stats(e: &SimExec, what: &str) -> SimStats {
    let st = e.take_stats();
    assert!(
        st.mma > 0 && st.lds_v4 > 0 && st.cp_async > 0 && st.ldmatrix == 0,
        "{what}: {st:?}"
    );
    assert_eq!(
        st.smem_extra_wavefronts, 0,
        "{what}: shared-memory bank conflicts ({st:?})"
    );
    st
}

/// The statistics of `wgmma` tile launches since the last call: wgmma fed by cp.async, and
/// neither mma.sync nor ldmatrix nor plain shared loads (wgmma reads its operands itself).
fn assert_wgmma_stats(e: &SimExec, what: &str) -> SimStats {
    let st = e.take_stats();
    assert!(
        st.wgmma > 0 && st.cp_async > 0 && st.mma == 0 && st.ldmatrix == 0 && st.lds_v4 == 0,
        "{what}: {st:?}"
    );
    st
}

/// The statistics of TMA tile launches since the last call: wgmma on tiles that tensor copies
/// (counted with the bulk copies) brought — no cp.async, no mma.sync, no ldmatrix, no plain
/// shared loads.
fn assert_tma_stats(e: &SimExec, what: &str) -> SimStats {
    let st = e.take_stats();
    assert!(
        st.wgmma > 0
            && st.bulk_copies > 0
            && st.cp_async == 0
            && st.mma == 0
            && st.ldmatrix == 0
            && st.lds_v4 == 0,
        "{what}: {st:?}"
    );
    st
}

/// [`assert_tensor_core_stats`], [`assert_stream_stats`], [`assert_wgmma_stats`] or
/// [`assert_tma_stats`], as `tile` is.
fn assert_tile_stats(e: &SimExec, tile: MmaTile, what: &str) -> SimStats {
    if tile.is_tma() {
        assert_tma_stats(e, what)
    } else if tile.is_wgmma() {
        assert_wgmma_stats(e, what)
    } else if tile.is_stream() {
        assert_stream_stats(e, what)
    } else {
        assert_tensor_core_stats(e, what)
    }
}

#[test]
fn mma_every_tile_matches_reference_around_its_edges() {
    let mut rng = Rng::new(41);
    let e = SimExec::new();
    for (ti, &tile) in MmaTile::ALL.iter().enumerate() {
        let (bm, bn) = (tile.bm(), tile.bn());
        // Exact tiles, ± 1 in every dimension (K around the 64-byte stage and the 32-byte mma
        // step, N odd: unpaired stores), several tiles with ragged edges, a single element,
        // K = 0 (bias only) and a K that fills more stages than the pipeline holds (the deep
        // tiles of 128-byte stages: more k tiles than their stages, too).
        let deep_k = if tile.is_wgmma() {
            64 * 6 + 16
        } else {
            (64 * 6 + 16).max(tile.bk() * (tile.stages() + 1) + 16)
        };
        let shapes = [
            (bm, bn, 64, 1),
            (bm + 1, bn - 1, 65, 1),
            (bm - 1, bn + 1, 63, 1),
            (2 * bm + 3, bn + 6, 31, 1),
            (1, 1, 1, 1),
            (3, 5, 0, 1),
            (bm / 2 + 5, 2 * bn - 2, deep_k, 1),
        ];
        check_tile_shapes(&e, tile, &mut rng, &shapes, |si| case(ti + si, ti + 2 * si));
        assert_tile_stats(&e, tile, &format!("{tile:?}"));
    }
}

#[test]
fn sm75_build_matches_reference_for_every_tile_it_runs() {
    // A simulated sm_75 GPU runs common.cuh's sm_75 code (the simulation library built with
    // I8RT_SIM_SM75, as the sm_75 CUBIN is built): synchronous copies instead of cp.async, four
    // m8n8k16 per m16n8k32. Every tile within Turing's 64 KiB of shared memory (splits 1 and 3)
    // and the GEMVs, around their edges and over more k tiles than a pipeline holds, against
    // the reference; the statistics show that code ran: no cp.async, and four times the mma
    // instructions the sm_80 code issues on the same shape.
    let mut rng = Rng::new(76);
    let (turing, ampere) = (SimExec::with_arch(75, 40), SimExec::with_arch(80, 40));
    let mut kernels = vec![
        GemmKernel::MmaGemv,
        GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
        GemmKernel::MmaGemvVariant(GemvVariant::Wide),
    ];
    for tile in MmaTile::ALL {
        if tile.runs_on(75) {
            kernels.extend([forced(tile, 1), forced(tile, 3)]);
        }
    }
    for (i, &kernel) in kernels.iter().enumerate() {
        let (bm, bn, stages) = match kernel {
            GemmKernel::Mma(Some(c)) => (c.tile.bm(), c.tile.bn(), c.tile.stages()),
            _ => (8, 16, 2),
        };
        // Every shape on sm_75; the first (the smallest) on sm_80 too, for the instruction
        // count (the sm_80 code's results over every shape are mma_every_tile's and the split-K
        // test's).
        let mut mma = [0u64; 2];
        for (si, &(m, n, k)) in [
            (bm + 1, bn - 1, 65),
            (2 * bm + 3, bn + 6, 31),
            (5, 2 * bn + 3, 64 * (2 * stages + 1) + 40),
        ]
        .iter()
        .enumerate()
        {
            let archs: &[&SimExec] = if si == 0 {
                &[&turing, &ampere]
            } else {
                &[&turing]
            };
            for (&e, count) in archs.iter().zip(&mut mma) {
                check_mma(
                    e,
                    kernel,
                    &mut rng,
                    (m, n, k),
                    case(i + si, i + 2 * si),
                    false,
                );
                let st = e.take_stats();
                assert!(st.mma > 0, "{kernel}: {st:?}");
                // (the GEMVs load straight into registers: no cp.async on either)
                let staged = matches!(kernel, GemmKernel::Mma(_)) && e.arch >= 80;
                assert_eq!(st.cp_async > 0, staged, "{kernel} on sm_{}: {st:?}", e.arch);
                if si == 0 {
                    *count = st.mma;
                }
            }
        }
        assert_eq!(
            mma[0],
            4 * mma[1],
            "{kernel}: m8n8k16 on sm_75, m16n8k32 on sm_80"
        );
    }
}

#[test]
fn wgmma_tiles_match_reference_around_their_128_byte_stages() {
    // The wgmma tiles' own stage is 128 bytes of K (four 32-byte instructions): K at, around
    // and well past it (8 k tiles, more than any of the 3- to 6-stage pipelines holds, so stage
    // buffers are refilled while the next is in the tensor cores), K = 16 (one chunk of the first
    // instruction), and ragged M / N edges; splits 1 and 2 (the K-crossing tile first in each).
    // Both legal timings of cp.async: landing at the wait (a stage read before its copies are
    // waited for fails) and at issue (a stage refilled while a wgmma in flight still reads it
    // fails — the emulation performs each wgmma at the wait that completes it).
    let mut rng = Rng::new(49);
    let mut e = SimExec::new();
    for (ti, (tile, early)) in [
        (MmaTile::Wgmma128x256, false),
        (MmaTile::Wgmma128x128, false),
        (MmaTile::Wgmma128x256, true),
        (MmaTile::Wgmma128x128, true),
        (MmaTile::Wgmma64x256, false),
        (MmaTile::Wgmma64x128, true),
        (MmaTile::Wgmma128x128D3, false),
        (MmaTile::Wgmma128x128D3, true),
        (MmaTile::Wgmma64x64, true),
        (MmaTile::Wgmma128x64, false),
    ]
    .into_iter()
    .enumerate()
    {
        e.cp_async_early = early;
        let (bm, bn) = (tile.bm(), tile.bn());
        let shapes = [
            (bm, bn, 128, 1),
            (bm - 3, bn + 2, 129, 1),
            (bm + 7, bn - 1, 127, 1),
            (17, 40, 16, 1),
            (bm + 1, bn, 128 * 7 + 48, 1),
            (60, bn + 9, 128 * 9, 2),
        ];
        check_tile_shapes(&e, tile, &mut rng, &shapes, |si| case(ti + si, ti + si));
        let st = assert_wgmma_stats(&e, &format!("{tile:?}, cp.async early: {early}"));
        eprintln!("{tile:?}, cp.async early: {early}: {st:?}");
    }
}

#[test]
fn tma_tiles_match_reference_across_their_rings_and_edges() {
    // The TMA tiles: K at, around and far past their 128-byte stage — more k tiles than the
    // ring holds (every stage refilled, some twice, while the next is in the tensor cores), a
    // K of 16 (the box mostly outside the matrix: zeros), ragged M and N (rows outside the map
    // arrive as zeros), odd strides' padding never read (K not a multiple of 16), splits 1, 2
    // and 3 (a split's k tiles start inside the matrix). The emulation lands a tensor copy at the
    // latest moment its mbarrier allows and performs each wgmma at the wait that completes it,
    // so a stage read before its `full` phase, or refilled before every warp released it,
    // computes on stale bytes and fails the bit check.
    let mut rng = Rng::new(61);
    let e = SimExec::new();
    for (ti, tile) in [
        MmaTile::Tma64x128,
        MmaTile::Tma128x128,
        MmaTile::Tma64x256,
        MmaTile::Tma128x256,
        MmaTile::Tma64x128D4,
        MmaTile::Tmc64x64M2N2,
        MmaTile::Tmc128x64M2N2,
        MmaTile::Tmc64x64N4,
    ]
    .into_iter()
    .enumerate()
    {
        let (bm, bn, st) = (tile.bm(), tile.bn(), tile.stages());
        let shapes = [
            (bm, bn, 128, 1),
            (bm - 3, bn + 2, 129, 1),
            (17, 40, 16, 1),
            (1, 2 * bn + 5, 128 * 3 + 16, 2),
            (bm + 7, bn - 1, 128 * (2 * st + 1) + 48, 1),
            (60, bn + 9, 128 * (st + 3) - 5, 2),
            (bm / 2 + 1, 2 * bn + 3, 128 * 7, 3),
        ];
        check_tile_shapes(&e, tile, &mut rng, &shapes, |si| case(ti + si, ti + 2 * si));
        let stats = assert_tma_stats(&e, &format!("{tile:?}"));
        eprintln!("{tile:?}: {stats:?}");
    }
}

#[test]
fn clustered_tma_tiles_cover_every_tile_once_and_read_each_box_once_per_cluster() {
    // The clustered TMA tiles (`tma::body_cluster`): grids of several clusters along N and M,
    // ragged (tiles wholly past M or N padding whole clusters: they load the matrix's first rows,
    // since the simulation refuses a box wholly outside its tensor, and store nothing), split 1
    // and 3, more k tiles than the ring holds. A block that computes another's tile leaves its
    // own unwritten (poisoned); a multicast to the wrong blocks, or a refill before every block
    // of the cluster released the stage, gives wrong sums or a deadlock; a remote arrival after
    // its target ended aborts. The count of tensor copies shows the sharing: per cluster and k
    // tile, CM X boxes and CN W boxes (not CM · CN of each).
    let mut rng = Rng::new(67);
    let e = SimExec::new();
    let rows = [
        (
            MmaTile::Tmc64x64M2N2,
            64 * 3 - 1,
            64 * 5 + 1,
            128 * 9 + 3,
            1,
        ),
        (MmaTile::Tmc64x64M2N2, 64 * 4, 64 * 4, 128 * 8, 3),
        (MmaTile::Tmc128x64M2N2, 128 + 1, 64 * 3 - 7, 128 * 6, 1),
        (MmaTile::Tmc128x64M2N2, 256, 64 * 2, 128 * 7 + 64, 2),
        (MmaTile::Tmc64x64N4, 33, 64 * 9 - 3, 128 * 8, 1),
        (MmaTile::Tmc64x64N4, 64 * 2 + 5, 64 * 4, 128 * 10, 3),
    ];
    check_forced_rows(&e, &mut rng, &rows, |(tile, m, n, k, splits)| {
        let st = assert_tma_stats(&e, &format!("{tile:?} {m}x{n}x{k} s{splits}"));
        // (check_gemm_on launches the GEMM once per output kind)
        let launches = e
            .take_launched()
            .iter()
            .filter(|&&k| k == tile.kernel(false) || k == tile.kernel(true))
            .count() as u64;
        assert!(launches > 0);
        let (cm, cn) = tile.cluster();
        let rows = m.div_ceil(tile.bm()).div_ceil(cm);
        let cols = n.div_ceil(tile.bn()).div_ceil(cn);
        // (the splits' k tiles together: every k tile once per cluster)
        let k_tiles = k.div_ceil(128) as u64;
        assert_eq!(
            st.bulk_copies,
            (rows * cols * (cm + cn)) as u64 * k_tiles * launches,
            "{tile:?} {m}x{n}x{k} s{splits}: {st:?}"
        );
        let l = MmaLaunch::new(MmaConfig { tile, splits }, m, n, k).unwrap();
        assert_eq!(l.grid.grid[0] as usize, rows * cols * cm * cn);
        assert_eq!(tile.kernel(false).cluster() as usize, cm * cn);
        assert_eq!(tile.kernel(true).cluster() as usize, cm * cn);
    });
}

#[test]
fn wgmma_grouped_block_order_covers_every_tile_once() {
    // The wgmma tiles take their output tile from tile.cuh's grouped order (8 tile rows per
    // group): grids taller than one group and not a multiple of it (a short last group), with
    // split-K (every split of a tile must get the same tile). A tile computed twice leaves
    // another unwritten (poisoned); a split of the wrong tile gives wrong sums.
    let mut rng = Rng::new(53);
    let e = SimExec::new();
    let rows = [
        (
            MmaTile::Wgmma64x128,
            64 * 10 - 5,
            2 * 128 + 3,
            2 * 128 + 7,
            1,
        ),
        (MmaTile::Wgmma64x128, 64 * 17 + 1, 128 + 1, 3 * 128, 2),
        (MmaTile::Wgmma128x128, 128 * 9 - 1, 130, 128, 1),
    ];
    check_forced_rows(&e, &mut rng, &rows, |(tile, m, n, k, splits)| {
        assert_wgmma_stats(&e, &format!("{tile:?} {m}x{n}x{k} s{splits}"));
    });
}

#[test]
fn mma_split_k_gives_the_same_bits_for_every_split() {
    // Each split count must reproduce the reference exactly (and so each other): partial sums
    // are exact i32, added by the tile's last block. K = 700 is 11 k tiles: splits of 2, 3, 5
    // and 16 (clamped to 11) leave a short last split (for the weight-streaming tiles also a
    // batch only partly inside the split); M = 20 has rows past M in every tile but the 16-row
    // one, whose partials are skipped.
    let mut rng = Rng::new(42);
    let e = SimExec::new();
    for (ti, tile) in [
        MmaTile::M16N128,
        MmaTile::M64N128,
        MmaTile::M128N128,
        MmaTile::Stream32x64,
        MmaTile::Stream64x128,
        MmaTile::Wgmma128x128,
        MmaTile::Wgmma64x128,
        MmaTile::Wgmma128x128D3,
        MmaTile::M64N64,
        MmaTile::M64N64K2,
        MmaTile::M128N64K2,
    ]
    .into_iter()
    .enumerate()
    {
        for (si, splits) in [1u32, 2, 3, 5, 16].into_iter().enumerate() {
            let m = if tile == MmaTile::M16N128 { 13 } else { 20 };
            check_mma(
                &e,
                forced(tile, splits),
                &mut rng,
                (m, 130, 700),
                case(ti + si, si),
                false,
            );
        }
        assert_tile_stats(&e, tile, &format!("split-K {tile:?}"));
    }
}

#[test]
fn mma_dispatch_choice_runs_and_matches_reference() {
    // The dispatch table's plan, forced, on the simulated H100: decode-like shapes, where it
    // splits K (`Auto` sends up to 64 rows to the GEMV; the table still decides 65 … 128 rows and
    // calls that force it), and tiled ones; the plan is printed for the record.
    let mut rng = Rng::new(43);
    let e = SimExec::new();
    for (i, &(m, n, k)) in [
        (2, 200, 2000),
        (5, 130, 2100),
        (40, 140, 600),
        (150, 260, 200),
    ]
    .iter()
    .enumerate()
    {
        let cfg = mma_dispatch(m, n, k, e.arch, e.sms, false);
        eprintln!("dispatch m={m} n={n} k={k} on sm_90 × 132: {cfg:?}");
        if m <= 5 {
            assert!(cfg.splits > 1, "{cfg:?}");
        }
        check_mma(
            &e,
            forced(cfg.tile, cfg.splits),
            &mut rng,
            (m, n, k),
            case(i, i + 1),
            false,
        );
    }
    assert_tensor_core_stats(&e, "dispatch");
}

#[test]
fn auto_on_hopper_runs_the_tables_stream_and_wgmma_tiles_exactly() {
    // `Auto` on the simulated sm_90 (whose wgmma kernels are available): 40 rows go to the
    // sliced deep 64 × 64 mma.sync tile, split K; 200 rows to the 64 × 64 wgmma tile (wgmma
    // instructions counted). On a 4-SM sm_90, where the same layers are too wide for the 64 × 64
    // tiles (over two per SM): 300 rows over a deep K to wgmma 64 × 128, and 40 rows (nine
    // 64 × 64 tiles) to the 64 × 64 weight-streaming tile (no wgmma). All give the reference's
    // bits.
    let mut rng = Rng::new(53);
    let deep = 64 * 32;
    for (e, m, n, tile) in [
        (SimExec::new(), 40, 72, MmaTile::M64N64K2),
        (SimExec::new(), 200, 72, MmaTile::Wgmma64x64),
        (SimExec::with_arch(90, 4), 300, 72, MmaTile::Wgmma64x128),
        (SimExec::with_arch(90, 4), 40, 9 * 64, MmaTile::Stream64x64),
    ] {
        let cfg = mma_dispatch(m, n, deep, e.arch, e.sms, true);
        assert_eq!(cfg.tile, tile, "M = {m}");
        check_mma(
            &e,
            GemmKernel::Auto,
            &mut rng,
            (m, n, deep),
            (ActCase::U8Rows, BiasCase::I32),
            false,
        );
        let st = e.take_stats();
        assert!(st.mma + st.wgmma > 0, "M = {m}: {st:?}");
        assert_eq!(st.wgmma > 0, tile.is_wgmma(), "M = {m}: {st:?}");
    }
}

#[test]
fn mma_extreme_operands_are_exact() {
    // All-extreme operands and K = 1200: any saturating step shows (|Σ| ≈ 4 · 10^7).
    let mut rng = Rng::new(44);
    let e = SimExec::new();
    for act in [ActCase::S8Tensor, ActCase::U8Tensor, ActCase::U8Rows] {
        for splits in [1, 3] {
            check_mma(
                &e,
                forced(MmaTile::M16N128, splits),
                &mut rng,
                (18, 24, 1200),
                (act, BiasCase::I32),
                true,
            );
        }
    }
    assert_tensor_core_stats(&e, "extreme");
}

#[test]
fn mma_is_exact_when_cp_async_lands_at_issue() {
    // The other legal timing of cp.async (copies complete as soon as issued): a kernel that
    // overwrote a stage still being read would fail here.
    let mut rng = Rng::new(45);
    let mut e = SimExec::new();
    e.cp_async_early = true;
    let rows = [
        (MmaTile::M64N128, 70, 129, 64 * 5 + 3, 1),
        (MmaTile::M128N256, 129, 257, 64 * 4, 1),
        (MmaTile::M16N128, 9, 200, 64 * 9 + 1, 3),
        (MmaTile::Stream64x64, 70, 129, 64 * 9 + 1, 1),
        (MmaTile::Stream128x64, 129, 65, 64 * 4, 1),
        (MmaTile::Wgmma128x256, 129, 257, 128 * 5 + 16, 3),
        (MmaTile::Wgmma128x128, 70, 129, 128 * 3, 1),
        (MmaTile::Wgmma64x256, 65, 300, 128 * 5 + 1, 1),
        (MmaTile::M64N64K2, 130, 70, 128 * 7 + 16, 3),
        (MmaTile::M128N64K2, 129, 65, 128 * 5 + 8, 1),
    ];
    check_forced_rows(&e, &mut rng, &rows, |(tile, ..)| {
        assert_tile_stats(&e, tile, &format!("cp.async early {tile:?}"));
    });
}

#[test]
fn path_choice_follows_architecture_alignment_and_forcing() {
    let mut rng = Rng::new(46);
    // Auto: tensor cores on sm_80 / sm_90, dp4a on sm_75 (which runs them forced only) and for
    // unaligned rows.
    for (arch, aligned, want) in [
        (80, true, Path::CudaMma),
        (90, true, Path::CudaMma),
        (75, true, Path::CudaDp4a),
        (90, false, Path::CudaDp4a),
    ] {
        let e = SimExec::with_arch(arch, 108);
        check_gemm_on(
            &e,
            GemmKernel::Auto,
            want,
            &mut rng,
            17,
            9,
            40,
            ActCase::U8Rows,
            BiasCase::F32,
            aligned,
            false,
        );
    }
    // Forced tensor cores on sm_75 (their own sm_75 build on a GPU; the simulation runs the
    // same source): a tile within Turing's 64 KiB of shared memory, and the GEMV.
    for kernel in [forced(MmaTile::M64N128, 1), GemmKernel::MmaGemv] {
        check_mma(
            &SimExec::with_arch(75, 40),
            kernel,
            &mut rng,
            (17, 9, 40),
            (ActCase::U8Rows, BiasCase::F32),
            false,
        );
    }
    // Forced dp4a on sm_90.
    check_gemm_on(
        &SimExec::new(),
        GemmKernel::Dp4a,
        Path::CudaDp4a,
        &mut rng,
        17,
        9,
        40,
        ActCase::S8Tensor,
        BiasCase::None,
        true,
        false,
    );
    // Forced tensor cores where they cannot run: an error naming the path, before any launch.
    let forced_err = |arch: u32, lda: usize, kernel: GemmKernel| {
        let e = SimExec::with_arch(arch, 108);
        let (m, n, k) = (4, 3, 16);
        let x = e.upload(&vec![1i8; m * lda]).unwrap();
        let w = e.upload(&vec![1i8; n * 16]).unwrap();
        let ones = e.upload(&[1.0f32; 4]).unwrap();
        let wsum = e.upload(&[16i32; 3]).unwrap();
        let mut y = e.alloc::<i32>(m * n).unwrap();
        let g = GemmDev {
            m,
            n,
            k,
            x: DevAct::S8(&x),
            lda,
            w: &w,
            ldb: 16,
            wsum: &wsum,
            w_scale: &ones,
            act_scale: &ones,
            per_row: false,
            act_zp: None,
            bias: DevBias::None,
            status: None,
            kernel,
            overlap: false,
        };
        let r = ops::gemm(&e, &g, &mut DevOut::I32(&mut y), &ScratchCache::new());
        assert_eq!(e.take_stats(), SimStats::default(), "nothing may run");
        r
    };
    for (arch, lda, kernel) in [
        (70, 16, GemmKernel::Mma(None)),
        (90, 17, GemmKernel::Mma(None)),
        (70, 16, GemmKernel::MmaGemv),
        (90, 17, GemmKernel::MmaGemv),
        // Tiles over sm_75's 64 KiB of shared memory per block.
        (75, 16, forced(MmaTile::M128N256, 1)),
        (75, 16, forced(MmaTile::Stream128x64, 1)),
        // A wgmma tile anywhere but sm_90 (its CUBIN is sm_90a).
        (80, 16, forced(MmaTile::Wgmma128x256, 1)),
        (100, 16, forced(MmaTile::Wgmma128x128, 1)),
        (80, 16, forced(MmaTile::Wgmma64x128, 1)),
        (80, 16, forced(MmaTile::Tma64x128, 1)),
        (100, 16, forced(MmaTile::Tma128x256, 1)),
        // The L2-prefetching kernels before sm_90 (cp.async.bulk.prefetch).
        (80, 16, forced(MmaTile::Stream64x64Pf, 1)),
        (80, 16, GemmKernel::MmaGemvVariant(GemvVariant::Prefetch)),
        (75, 16, GemmKernel::MmaGemvVariant(GemvVariant::Prefetch)),
        // The 16-row dp4a GEMV on unaligned rows (it has no byte-guarded loads but at K's end).
        (90, 17, GemmKernel::Dp4aGemv16),
        (75, 17, GemmKernel::Dp4aGemv16),
    ] {
        let err = forced_err(arch, lda, kernel).unwrap_err();
        let want = if kernel == GemmKernel::Dp4aGemv16 {
            Path::CudaDp4a
        } else {
            Path::CudaMma
        };
        assert!(
            matches!(err, crate::Error::PathUnavailable { path, .. } if path == want),
            "sm_{arch} lda {lda} {kernel:?}: {err:?}"
        );
    }
    // `MmaTile::runs_on`, which the tests use to pick what to run on a simulated or real sm_75,
    // states the same rule.
    for tile in MmaTile::ALL {
        for arch in [70, 75, 80, 86, 90, 100] {
            let want = arch >= 75
                && if tile.is_wgmma() {
                    arch == 90
                } else if tile == MmaTile::Stream64x64Pf {
                    arch >= 90
                } else {
                    arch >= 80 || tile.smem_bytes() <= 64 << 10
                };
            assert_eq!(tile.runs_on(arch), want, "{tile:?} on sm_{arch}");
        }
    }
    // A zero split factor is refused.
    let e = SimExec::new();
    let (m, n, k) = (2, 2, 16);
    let x = e.upload(&vec![1i8; m * 16]).unwrap();
    let w = e.upload(&vec![1i8; n * 16]).unwrap();
    let ones = e.upload(&[1.0f32; 2]).unwrap();
    let wsum = e.upload(&[16i32; 2]).unwrap();
    let mut y = e.alloc::<i32>(m * n).unwrap();
    let g = GemmDev {
        m,
        n,
        k,
        x: DevAct::S8(&x),
        lda: 16,
        w: &w,
        ldb: 16,
        wsum: &wsum,
        w_scale: &ones,
        act_scale: &ones,
        per_row: false,
        act_zp: None,
        bias: DevBias::None,
        status: None,
        kernel: forced(MmaTile::M16N128, 0),
        overlap: false,
    };
    assert!(ops::gemm(&e, &g, &mut DevOut::I32(&mut y), &ScratchCache::new()).is_err());
}

#[test]
fn dispatch_table_covers_the_design_shapes_sensibly() {
    // The table on an H100 (sm_90, 132 SMs; with the wgmma kernels and, as under a PTX-only
    // kernel source, without them) and an A100 (sm_80, 108 SMs) for DESIGN.md §6's shapes plus
    // 8192³ (printed for bench/RESULTS-gpu-static.md), and invariants everywhere: a split never
    // exceeds 8, leaves no empty split, keeps the finishing block's read of partial sums within
    // 64 KiB, and only happens when the tiles cannot fill the GPU.
    let shapes = [
        (1, 4096, 4096),
        (8, 4096, 4096),
        (32, 4096, 4096),
        (64, 4096, 4096),
        (128, 4096, 4096),
        (256, 4096, 4096),
        (512, 1024, 1024),
        (1024, 4096, 1024),
        (2048, 2048, 2048),
        (8192, 8192, 8192),
    ];
    for (arch, sms, hopper) in [(90, 132, true), (90, 132, false), (80, 108, true)] {
        for &(m, k, n) in &shapes {
            let cfg = mma_dispatch(m, n, k, arch, sms, hopper);
            let l = MmaLaunch::new(cfg, m, n, k).unwrap();
            eprintln!(
                "sm_{arch} (wgmma {hopper}) M={m} K={k} N={n}: {:?}, {} split(s) of {} k tiles, {} blocks ({} resident per SM)",
                cfg.tile,
                l.splits,
                l.kt_per_split,
                l.tiles() * l.splits,
                ops::resident_blocks(cfg.tile, arch)
            );
        }
        // Hopper's rules only on sm_90 (an sm_80 told `hopper` keeps the mma.sync table).
        let wg = hopper && arch == 90;
        for m in [
            1usize, 2, 7, 8, 9, 16, 17, 33, 64, 65, 128, 129, 256, 257, 1000, 5000,
        ] {
            for n in [1usize, 64, 300, 4096, 11008] {
                for k in [1usize, 63, 64, 200, 4096, 16384] {
                    let cfg = mma_dispatch(m, n, k, arch, sms, hopper);
                    let l = MmaLaunch::new(cfg, m, n, k).unwrap();
                    assert_eq!(
                        cfg.tile.is_wgmma() || cfg.tile.is_stream(),
                        wg && !matches!(cfg.tile, MmaTile::M16N128 | MmaTile::M64N64K2)
                    );
                    let ktiles = k.div_ceil(64);
                    assert!((1..=8).contains(&l.splits), "{m} {n} {k}: {l:?}");
                    assert!(
                        (l.splits - 1) * l.kt_per_split < k.div_ceil(cfg.tile.bk()).max(1),
                        "empty split: {l:?}"
                    );
                    let rows = cfg.tile.bm().min(m.next_multiple_of(8));
                    assert!(
                        (l.splits - 1) * rows * cfg.tile.bn() * 4 <= 64 << 10,
                        "{l:?}"
                    );
                    if l.splits > 1 {
                        // Split only when the tiles give fewer than two blocks per SM.
                        assert!(
                            l.tiles() < 2 * sms as usize,
                            "split with enough tiles: {l:?}"
                        );
                        assert!(ktiles >= 32, "{l:?}");
                    }
                    let tiles = |t: MmaTile| m.div_ceil(t.bm()) * n.div_ceil(t.bn());
                    let sms = sms as usize;
                    let want = if wg {
                        match m {
                            33.. if tiles(MmaTile::M64N64) <= 2 * sms
                                && (m <= 128 || k.div_ceil(64) < 32) =>
                            {
                                MmaTile::M64N64K2
                            }
                            33.. if tiles(MmaTile::M64N64) <= 2 * sms => MmaTile::Wgmma64x64,
                            0..=128 => MmaTile::Stream64x64,
                            _ if tiles(MmaTile::Wgmma128x256) >= 2 * sms => MmaTile::Wgmma128x256,
                            _ if tiles(MmaTile::Wgmma128x128D3) >= sms => MmaTile::Wgmma128x128D3,
                            _ if k >= 2048 || tiles(MmaTile::Wgmma64x128) >= 2 * sms => {
                                MmaTile::Wgmma64x128
                            }
                            _ => MmaTile::M16N128,
                        }
                    } else {
                        match m {
                            0..=128 => MmaTile::M16N128,
                            _ if tiles(MmaTile::M128N128) >= 8 * sms => MmaTile::M128N128,
                            _ if k >= 2048 || tiles(MmaTile::M64N128) >= 2 * sms => {
                                MmaTile::M64N128
                            }
                            _ => MmaTile::M16N128,
                        }
                    };
                    assert_eq!(
                        cfg.tile, want,
                        "M = {m} N = {n} K = {k} sm_{arch} wgmma {hopper}"
                    );
                }
            }
        }
    }
    // The measured tables. Hopper (H200 run of 2026-11-26, the tuner's choices): 8192³ on
    // wgmma 128 × 256, 2048³ on the 3-stage 128 × 128.
    let h = |m, n, k| {
        let c = mma_dispatch(m, n, k, 90, 132, true);
        (c.tile, c.splits)
    };
    assert_eq!(h(8192, 8192, 8192), (MmaTile::Wgmma128x256, 1));
    assert_eq!(h(2048, 2048, 2048), (MmaTile::Wgmma128x128D3, 1));
    // (H200 runs of 2026-11-28, the tuner's choices: 64 rows on the sliced deep 64 × 64
    // mma.sync tile split twice, 128 rows and 512 × 1024 × 1024 (K shallower than 2048) on it
    // whole, 256 × 4096² and 1024 × 4096 × 1024 on the 64 × 64 wgmma tile whole; split below
    // half a tile per SM, toward one block per SM; past two tiles per SM the rules above)
    assert_eq!(h(1024, 1024, 4096), (MmaTile::Wgmma64x64, 1));
    assert_eq!(h(64, 4096, 4096), (MmaTile::M64N64K2, 2));
    assert_eq!(h(128, 4096, 4096), (MmaTile::M64N64K2, 1));
    assert_eq!(h(256, 4096, 4096), (MmaTile::Wgmma64x64, 1));
    assert_eq!(h(100, 1024, 4096), (MmaTile::M64N64K2, 4));
    assert_eq!(h(256, 8192, 4096), (MmaTile::Wgmma64x128, 1));
    assert_eq!(h(256, 4096, 1024), (MmaTile::M64N64K2, 1));
    // (wider layers, over two 64 × 64 tiles per SM, up to 128 rows: the weight-streaming tile)
    assert_eq!(h(64, 16384 + 1024, 4096).0, MmaTile::Stream64x64);
    assert_eq!(h(512, 1024, 1024), (MmaTile::M64N64K2, 1));
    // mma.sync (H200 sweep of 2026-11-25): 8192³ on 128 × 128 tiles without a split; decode
    // splits K 8 ways; 512 × 1024 × 1024 on 16-row tiles; 1024 × 4096 × 1024 on 64 × 128 split
    // twice.
    let big = mma_dispatch(8192, 8192, 8192, 90, 132, false);
    assert_eq!((big.tile, big.splits), (MmaTile::M128N128, 1));
    let mid = mma_dispatch(512, 1024, 1024, 90, 132, false);
    assert_eq!((mid.tile, mid.splits), (MmaTile::M16N128, 1));
    let deep = mma_dispatch(1024, 1024, 4096, 90, 132, false);
    assert_eq!((deep.tile, deep.splits), (MmaTile::M64N128, 2));
    let gemv = mma_dispatch(1, 4096, 4096, 90, 132, false);
    assert_eq!(gemv.tile, MmaTile::M16N128);
    assert!(gemv.splits >= 8, "{gemv:?}");
    // Where the GEMV stops: 32 rows with Hopper's rules, 64 without; its narrow block shape
    // for up to 8 rows once the default's blocks exceed three per SM (sm_90 only).
    assert_eq!(ops::gemv_auto_max_m(90, true), 32);
    assert_eq!(ops::gemv_auto_max_m(90, false), 64);
    assert_eq!(ops::gemv_auto_max_m(80, true), 64);
    assert_eq!(
        ops::gemv_auto_variant(1, 8192, 90, 132),
        Some(ops::GemvVariant::Narrow)
    );
    assert_eq!(
        ops::gemv_auto_variant(8, 8192, 90, 132),
        Some(ops::GemvVariant::Narrow)
    );
    assert_eq!(ops::gemv_auto_variant(9, 8192, 90, 132), None);
    assert_eq!(ops::gemv_auto_variant(1, 4096, 90, 132), None);
    assert_eq!(ops::gemv_auto_variant(1, 8192, 80, 108), None);
}

#[test]
fn mma_split_k_and_gemv_with_flagged_input_write_nothing_and_leave_the_counters_clear() {
    // A status that reports non-finite input makes every block return before it counts (or, in
    // the GEMV, before its epilogue), so the output keeps its sentinel and the per-tile counters stay zero: the next launch with the
    // same scratch (and a clear status) is exact.
    use super::params::Status;
    let e = SimExec::new();
    let scratch = ScratchCache::new();
    let (m, n, k) = (3, 40, 64 * 6);
    let mut rng = Rng::new(47);
    let xv: Vec<i8> = (0..m * k).map(|_| rng.int(-128, 127) as i8).collect();
    let wv: Vec<i8> = (0..n * k).map(|_| rng.int(-127, 127) as i8).collect();
    let x = e.upload(&xv).unwrap();
    let w = e.upload(&wv).unwrap();
    let ones = e.upload(&vec![1.0f32; n]).unwrap();
    let wsum = e
        .upload(&crate::reference::weight_row_sums(&wv, n, k))
        .unwrap();
    let bad = e.upload(&[Status { count: 1, first: 0 }]).unwrap();
    let good = e.upload(&[Status::CLEAR]).unwrap();
    let want: Vec<i32> = (0..m * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            (0..k)
                .map(|t| xv[r * k + t] as i32 * wv[c * k + t] as i32)
                .sum()
        })
        .collect();
    for (i, (status, expect_written)) in
        [(&bad, false), (&good, true), (&bad, false), (&good, true)]
            .into_iter()
            .cycle()
            .take(16)
            .enumerate()
    {
        // The split tiled kernel, the split weight-streaming tile, then the GEMV and its three
        // block variants (a flagged and a clear status each).
        let kernel = match i / 4 {
            0 => forced(MmaTile::M16N128, 4),
            1 => forced(MmaTile::Stream64x64, 4),
            _ if i < 10 => GemmKernel::MmaGemv,
            _ if i < 12 => GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
            _ if i < 14 => GemmKernel::MmaGemvVariant(GemvVariant::Wide),
            _ => GemmKernel::MmaGemvVariant(GemvVariant::Bulk),
        };
        let mut y = e.upload(&vec![-7i32; m * n]).unwrap();
        let g = GemmDev {
            m,
            n,
            k,
            x: DevAct::S8(&x),
            lda: k,
            w: &w,
            ldb: k,
            wsum: &wsum,
            w_scale: &ones,
            act_scale: &ones,
            per_row: false,
            act_zp: None,
            bias: DevBias::None,
            status: Some((status, 0)),
            kernel,
            overlap: false,
        };
        assert_eq!(
            ops::gemm(&e, &g, &mut DevOut::I32(&mut y), &scratch).unwrap(),
            Path::CudaMma
        );
        let mut got = vec![0i32; m * n];
        e.read(&y, &mut got).unwrap();
        if expect_written {
            assert_eq!(got, want);
        } else {
            assert!(got.iter().all(|&v| v == -7), "written despite the status");
        }
    }
}

/// The weight-streaming GEMV ran: mma, and neither ldmatrix nor cp.async (its fragments come
/// straight from global memory).
fn assert_gemv_stats(e: &SimExec, what: &str) {
    let st = e.take_stats();
    assert!(
        st.mma > 0 && st.ldmatrix == 0 && st.cp_async == 0,
        "{what}: {st:?}"
    );
}

#[test]
fn gemv_matches_reference_around_every_edge() {
    // The three block-row widths (8, 16, 32 activation rows) at, below and above their edges and
    // over several block rows (M = 33, 70); N around the 16 weight rows of a block; K around the
    // 64-byte step, the 512 bytes of one round of 8 warps, the tail step and its 16-byte pieces
    // (1, 15, 17, 63, 65, 8 · 64 + 40), a warp with no whole step (K = 3 · 64: warps 3–7 idle),
    // several batches per warp (K = 64 · 8 · 5 + 16) and K = 0 (bias only). The same shapes run
    // the block variants (8-row block rows: M = 9 … 70 take 2 … 9 of them; the narrow one's 4
    // warps and 3-step batches end the 40-step K on a partial batch, the wide one's 12 warps
    // leave warps idle at K = 3 · 64 and 8 · 64 + 40).
    let mut rng = Rng::new(48);
    let e = SimExec::new();
    for kernel in [
        GemmKernel::MmaGemv,
        GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
        GemmKernel::MmaGemvVariant(GemvVariant::Wide),
    ] {
        for (i, &(m, n, k)) in [
            (1, 16, 64),
            (1, 17, 1),
            (2, 15, 15),
            (3, 33, 17),
            (7, 16, 63),
            (8, 31, 65),
            (9, 16, 512),
            (16, 20, 8 * 64 + 40),
            (17, 16, 3 * 64),
            (31, 5, 64 * 8 * 5 + 16),
            (32, 16, 100),
            (33, 18, 130),
            (70, 17, 48),
            (5, 9, 0),
        ]
        .iter()
        .enumerate()
        {
            check_mma(&e, kernel, &mut rng, (m, n, k), case(i, i / 4 + i), false);
        }
        assert_gemv_stats(&e, &format!("{kernel:?}"));
    }
}

/// The GEMV's edge shapes that its sm_90 variants (bulk-copy, prefetching) run before their
/// own: M around the 8-, 16- and 32-row block rows, N around a block's 16 rows, K around the
/// 64-byte step and its 16-byte pieces, a round of 8 warps, idle warps (K = 3 · 64), K = 0.
const GEMV_VARIANT_EDGES: [(usize, usize, usize); 8] = [
    (1, 16, 64),
    (1, 17, 1),
    (2, 15, 15),
    (3, 33, 17),
    (8, 31, 65),
    (9, 16, 512),
    (17, 16, 3 * 64),
    (5, 9, 0),
];

/// [`check_mma`] of a GEMV variant over [`GEMV_VARIANT_EDGES`] and then `own` shapes, shape `i`
/// with the cases `case(i, i / 4 + i)` and extreme operands at `i == 11`; `after(shape)` runs
/// after each (the caller's per-launch checks).
fn check_gemv_variant(
    e: &SimExec,
    variant: GemvVariant,
    rng: &mut Rng,
    own: &[(usize, usize, usize)],
    mut after: impl FnMut((usize, usize, usize)),
) {
    let kernel = GemmKernel::MmaGemvVariant(variant);
    for (i, &shape) in GEMV_VARIANT_EDGES.iter().chain(own).enumerate() {
        check_mma(e, kernel, rng, shape, case(i, i / 4 + i), i == 11);
        after(shape);
    }
}

#[test]
fn gemv_bulk_copies_match_reference_around_every_edge() {
    // The bulk-copy GEMV (`GemvVariant::Bulk`, sm_90): the GEMV's edge shapes (M around its 8-,
    // 16- and 32-row block rows and over several of them, N around a block's 16 rows — rows
    // past N are not copied —, K around the
    // 64-byte step and its 16-byte pieces, K = 0), then K across its ring of 4 stages of 1 KiB
    // chunks: one chunk, the ring exactly once, once plus a 16-byte chunk, and twice round with a
    // short last chunk whose crossing step meets a stage's older bytes (zeros on the activation
    // side), with extreme operands once. Bulk copies counted, the stage reads free of bank
    // conflicts, no ldmatrix and no cp.async.
    let mut rng = Rng::new(71);
    let e = SimExec::new();
    let bulk = GemmKernel::MmaGemvVariant(GemvVariant::Bulk);
    let own = [
        (1, 40, 1024),
        (4, 17, 4 * 1024),
        (3, 18, 4 * 1024 + 16),
        (8, 33, 9 * 1024 + 40),
        (12, 16, 5000),
        (32, 20, 4 * 1024 + 48),
        (33, 18, 130),
        (70, 17, 5 * 1024),
    ];
    check_gemv_variant(&e, GemvVariant::Bulk, &mut rng, &own, |_| {});
    let st = e.take_stats();
    assert!(
        st.mma > 0 && st.bulk_copies > 0 && st.lds_v4 > 0,
        "bulk GEMV: {st:?}"
    );
    assert_eq!(
        (st.ldmatrix, st.cp_async, st.smem_extra_wavefronts),
        (0, 0, 0),
        "bulk GEMV: {st:?}"
    );
    // Before sm_90 it is refused, not launched.
    let old = SimExec::with_arch(80, 108);
    let err = ops::arch_refusal(bulk, old.arch).expect("refused on sm_80");
    assert!(err.contains("sm_90"), "{err}");
}

/// The launches since the last call were all kernels named `prefix…`, and their L2 prefetches
/// (sim.h's coverage, summed over the launches) asked for every row of the [n, k] weights once
/// per launch, K rounded up to 16, nothing twice, and left no streamed weight byte uncovered.
/// Returns the statistics.
fn assert_prefetched_once(e: &SimExec, prefix: &str, n: usize, k: usize, what: &str) -> SimStats {
    let st = e.take_stats();
    let launched = e.take_launched();
    assert!(
        !launched.is_empty() && launched.iter().all(|id| id.name().starts_with(prefix)),
        "{what}: {launched:?}"
    );
    let kc = k.next_multiple_of(16) as u64;
    assert_eq!(
        st.l2_prefetch_bytes,
        launched.len() as u64 * n as u64 * kc,
        "{what}: every weight row once per launch; {st:?}"
    );
    assert_eq!(
        (
            st.l2_prefetch_repeated_bytes,
            st.streamed_unprefetched_bytes
        ),
        (0, 0),
        "{what}: {st:?}"
    );
    st
}

/// The launches since the last call prefetched nothing and streamed weight bytes outside any
/// prefetch: what the coverage of [`assert_prefetched_once`] reports for a kernel without one.
fn assert_streams_unprefetched(e: &SimExec, what: &str) {
    let st = e.take_stats();
    assert_eq!(st.l2_prefetches, 0, "{what}: {st:?}");
    assert!(st.streamed_unprefetched_bytes > 0, "{what}: {st:?}");
}

#[test]
fn gemv_prefetch_matches_reference_and_streams_only_weight_bytes_it_prefetched_once() {
    // The prefetching GEMV (`GemvVariant::Prefetch`, sm_90): the default GEMV's edge shapes (M
    // around its 8-, 16- and 32-row block rows and over several of them, N around a block's 16
    // rows, K around the 64-byte step, its 16-byte pieces, a round of 8 warps, idle warps, K = 0),
    // then K around its 4 KiB window (the window exactly, one piece more, several windows with a
    // short tail, a warp with a batch fewer than warp 0). Bits against the reference, and per
    // shape what its L2 prefetches asked for (sim.h's coverage, summed over the launches): every
    // weight row of the layer, K rounded up to 16, exactly once per launch (block row 0 alone
    // prefetches; the others read the same rows), nothing twice, and no streamed weight byte
    // that no prefetch of its launch covered. The default GEMV, the same way, prefetches nothing
    // and streams bytes outside any prefetch: the coverage can fail.
    let mut rng = Rng::new(72);
    let e = SimExec::new();
    let pf = GemmKernel::MmaGemvVariant(GemvVariant::Prefetch);
    let own = [
        (16, 20, 8 * 64 + 40),
        (1, 40, 4096),
        (4, 17, 4096 + 16),
        (12, 18, 4096 + 3 * 512 + 40),
        (32, 20, 9 * 1024 + 8),
        (33, 18, 5000),
        (70, 17, 4096 + 9 * 64),
    ];
    check_gemv_variant(&e, GemvVariant::Prefetch, &mut rng, &own, |(m, n, k)| {
        let st = assert_prefetched_once(&e, "gemv_mma_pf_", n, k, &format!("{m}x{n}x{k}"));
        assert!(st.mma > 0 || k == 0, "{m}x{n}x{k}: {st:?}");
        assert_eq!(
            (st.ldmatrix, st.cp_async, st.bulk_copies),
            (0, 0, 0),
            "{m}x{n}x{k}: {st:?}"
        );
    });
    check_mma(
        &e,
        GemmKernel::MmaGemv,
        &mut rng,
        (4, 17, 4096 + 16),
        (ActCase::S8Tensor, BiasCase::None),
        false,
    );
    assert_streams_unprefetched(&e, "default GEMV");
    // Before sm_90 it is refused, not launched.
    let old = SimExec::with_arch(80, 108);
    let err = ops::arch_refusal(pf, old.arch).expect("refused on sm_80");
    assert!(err.contains("sm_90"), "{err}");
}

#[test]
fn stream_prefetch_tile_matches_reference_and_streams_only_weight_bytes_it_prefetched_once() {
    // The prefetching 64 × 64 stream tile (`MmaTile::Stream64x64Pf`, sm_90) at split-K 1, 2, 3
    // and 5 (each split prefetching its own k range), over M around its 64 rows and past them
    // (block rows past the first prefetch nothing), N around its 64 weight rows, K around the
    // 64-byte step, its 16-byte pieces, a batch of 4 steps, the 2 KiB advance and the 4 KiB
    // window, K = 0. Bits against the reference, and what its L2 prefetches asked for, summed
    // over the launches: every weight row once per launch (K rounded up to 16), nothing twice,
    // no streamed weight byte outside a prefetch. The plain 64 × 64 stream tile prefetches
    // nothing and streams bytes outside any prefetch: the coverage can fail.
    let mut rng = Rng::new(73);
    let e = SimExec::new();
    let tile = MmaTile::Stream64x64Pf;
    for (i, &(m, n, k, splits)) in [
        (64, 64, 64, 1),
        (65, 63, 65, 1),
        (1, 17, 15, 1),
        (33, 70, 256 + 40, 2),
        (63, 65, 2048, 3),
        (9, 64, 2048 + 16, 2),
        (40, 100, 4096 + 3 * 256 + 8, 1),
        (130, 20, 4096 + 512, 5),
        (17, 64, 9 * 1024 + 40, 3),
        (5, 9, 0, 1),
    ]
    .iter()
    .enumerate()
    {
        check_mma(
            &e,
            forced(tile, splits),
            &mut rng,
            (m, n, k),
            case(i, i / 4 + i),
            i == 6,
        );
        let st = assert_prefetched_once(
            &e,
            "gemm_stream_pf_64x64_",
            n,
            k,
            &format!("{m}x{n}x{k} split {splits}"),
        );
        assert!(
            k == 0 || (st.mma > 0 && st.lds_v4 > 0 && st.cp_async > 0),
            "{m}x{n}x{k}: {st:?}"
        );
        assert_eq!(
            (st.ldmatrix, st.bulk_copies, st.smem_extra_wavefronts),
            (0, 0, 0),
            "{m}x{n}x{k}: {st:?}"
        );
    }
    check_mma(
        &e,
        forced(MmaTile::Stream64x64, 2),
        &mut rng,
        (40, 65, 4096 + 16),
        (ActCase::S8Tensor, BiasCase::None),
        false,
    );
    assert_streams_unprefetched(&e, "plain stream tile");
    // Before sm_90 it is refused, not launched.
    let err = ops::arch_refusal(GemmKernel::Mma(Some(MmaConfig { tile, splits: 1 })), 80)
        .expect("refused on sm_80");
    assert!(err.contains("sm_90"), "{err}");
}

#[test]
fn gemv_extreme_operands_are_exact_and_auto_chooses_it_for_few_rows() {
    // All-extreme operands over a deep K: any saturating or sign-misread step shows.
    let mut rng = Rng::new(49);
    let e = SimExec::new();
    for (i, act) in [ActCase::S8Tensor, ActCase::U8Tensor, ActCase::U8Rows]
        .into_iter()
        .enumerate()
    {
        check_mma(
            &e,
            match i {
                1 => GemmKernel::MmaGemvVariant(GemvVariant::Narrow),
                2 => GemmKernel::MmaGemvVariant(GemvVariant::Wide),
                _ => GemmKernel::MmaGemv,
            },
            &mut rng,
            (10, 20, 1200),
            (act, BiasCase::I32),
            true,
        );
    }
    assert_gemv_stats(&e, "gemv extreme");
    // Auto: up to gemv_auto_max_m rows on sm_80+ run it (one row included): 32 on sm_90 with
    // the wgmma kernels, 64 on sm_80; the next row count runs a tiled kernel, whose fragments
    // come by ldmatrix (Hopper: the sliced deep 64 × 64 tile; sm_80: 16 × 128).
    for (e, last) in [
        (SimExec::new(), 32),
        (SimExec::with_arch(80, 108), ops::GEMV_AUTO_MAX_M),
    ] {
        assert_eq!(ops::gemv_auto_max_m(e.arch, true), last);
        for m in [1, 2, last] {
            check_mma(
                &e,
                GemmKernel::Auto,
                &mut rng,
                (m, 24, 200),
                (ActCase::S8Rows, BiasCase::F32),
                false,
            );
            let st = e.take_stats();
            assert!(st.mma > 0 && st.ldmatrix == 0, "M = {m}: {st:?}");
        }
        check_mma(
            &e,
            GemmKernel::Auto,
            &mut rng,
            (last + 1, 24, 200),
            (ActCase::U8Tensor, BiasCase::None),
            false,
        );
        let st = e.take_stats();
        assert!(st.mma > 0 && st.ldmatrix > 0, "M = {}: {st:?}", last + 1);
    }
}

#[test]
fn simulation_aborts_a_global_read_past_the_end_of_a_buffer() {
    // What stands behind every 16-byte global load, cp.async source and ld.global.cg of a
    // simulated launch: each must lie inside a live device buffer. The GEMV launched by hand
    // (bypassing the host's length checks) with K one 16-byte piece longer than its activation
    // buffer must abort the simulation — a read the poison around the buffer cannot show when
    // what it reads is multiplied by zero. The launch runs in a child process (this test binary,
    // this test alone), since the simulation aborts its process on a kernel fault.
    use super::exec::Grid;
    use super::params::{EpiParams, GemmParams, OUT_I32};
    use super::registry::KernelId;
    const CHILD: &str = "INT8RT_SIM_OOB_CHILD";
    const NAME: &str =
        "cuda::sim_mma_tests::simulation_aborts_a_global_read_past_the_end_of_a_buffer";
    if std::env::var_os(CHILD).is_some() {
        let e = SimExec::new();
        let (n, k) = (16, 64);
        let x = e.upload(&vec![1i8; k - 16]).unwrap();
        let w = e.upload(&vec![0i8; n * k]).unwrap();
        let ones = e.upload(&[1.0f32; 16]).unwrap();
        let wsum = e.upload(&[0i32; 16]).unwrap();
        let mut y = e.upload(&[0i32; 16]).unwrap();
        let p = GemmParams {
            x: e.addr(&x).0,
            w: e.addr(&w).0,
            y: e.addr_mut(&mut y).0,
            wsum: e.addr(&wsum).0,
            lda: k as i64,
            ldb: k as i64,
            ldy: n as i64,
            m: 1,
            n: n as i32,
            k: k as i32,
            epi: EpiParams {
                w_scale: e.addr(&ones).0,
                act_scale: e.addr(&ones).0,
                out_kind: OUT_I32,
                ..EpiParams::default()
            },
            ..GemmParams::default()
        };
        let grid = Grid {
            grid: [1, 1, 1],
            block: [256, 1, 1],
            smem: 0,
        };
        // SAFETY: deliberately violated for x (16 bytes short), the point of the test; the
        // simulation checks the load before it reads, and the bytes past x's data still lie in
        // its allocation (the poisoned slack around every simulated buffer).
        let r = unsafe { e.launch(KernelId::GemvMmaM8S8, grid, &p) };
        eprintln!("the launch returned: {r:?}");
        std::process::exit(0);
    }
    let (ok, err) = run_test_in_child(NAME, CHILD, "1");
    assert!(
        !ok && err.contains("lies outside every device buffer"),
        "{err}"
    );
}
