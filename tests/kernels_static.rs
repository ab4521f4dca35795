//! tests/kernels_static.rs — what can be checked of the GPU kernels without a GPU, from the
//! images build.rs compiled with NVRTC: every kernel was compiled for every CUBIN architecture
//! it runs on, none spills registers or uses a stack frame (local memory), and the SASS (through
//! `cuobjdump -sass`, found at `$INT8RT_CUOBJDUMP`) of every dp4a kernel contains `IDP.4A`, of
//! every tiled tensor-core kernel (`kernels/gemm_mma*.cu`) `IMMA` fed by `LDSM` (ldmatrix) from
//! shared memory filled by `LDGSTS` (cp.async), of every weight-streaming one
//! (`kernels/gemv_mma*.cu`) `IMMA` fed by `LDG` (global loads) — its staged variant's also by
//! `LDS` from shared memory that `LDGSTS` filled, its bulk-copy variant's by `LDS` from shared
//! memory that `UBLKCP` filled on `SYNCS` (mbarriers); on sm_90 the prefetching kernels'
//! (`…_pf_…`) beside L2 bulk prefetches (`UBLKPF`; no other `mma` kernel has one); of every
//! `wgmma` kernel `IGMMA` on shared
//! memory filled by `LDGSTS` or, in `kernels/gemm_tma.cu`, by `UTMALDG` (tensor copies) on
//! `SYNCS`; the instruction mix of each tensor-core kernel is
//! printed (bench/RESULTS-gpu-static.md); the instruction-peak kernels (`kernels/peak.cu`) hold
//! exactly one loop's worth of their instruction (`IMMA` / `IDP.4A`: none folded away, none
//! added, so the bench's operation count is what runs). CI sets `INT8RT_REQUIRE_NVRTC=1` (and the cuobjdump
//! path), turning "not compiled here" into a failure.

#![cfg(feature = "cuda")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use int8rt::cuda::registry::{self, KernelId, Module};
use int8rt::cuda::PeakKernel;

fn required() -> bool {
    std::env::var("INT8RT_REQUIRE_NVRTC").as_deref() == Ok("1")
}

#[test]
fn every_kernel_compiled_without_spills_or_stack() {
    if !registry::BUILT_WITH_NVRTC {
        assert!(
            !required(),
            "INT8RT_REQUIRE_NVRTC=1 but the kernels were not compiled at build time: {}",
            registry::BUILD_NOTE
        );
        eprintln!(
            "kernels not compiled at build time ({}); static checks skipped",
            registry::BUILD_NOTE
        );
        return;
    }
    let res = registry::resources();
    eprintln!(
        "{:<8} {:<26} {:>5} {:>7} {:>6} {:>7}",
        "arch", "kernel", "regs", "smem", "stack", "spills"
    );
    for r in &res {
        eprintln!(
            "{:<8} {:<26} {:>5} {:>7} {:>6} {:>3}/{:<3}",
            r.arch,
            r.kernel,
            r.registers,
            r.smem_bytes,
            r.stack_bytes,
            r.spill_stores,
            r.spill_loads
        );
    }
    // Every kernel on each of its module's CUBIN targets (sm_80 and sm_90; sm_90a alone for the
    // architecture-specific wgmma module).
    for k in KernelId::ALL {
        for &arch in k.module().cubin_targets() {
            let r = res
                .iter()
                .find(|r| r.kernel == k.name() && r.arch == arch)
                .unwrap_or_else(|| panic!("no ptxas report for {} on {arch}", k.name()));
            assert_eq!(
                (r.spill_stores, r.spill_loads),
                (0, 0),
                "{} spills on {arch}",
                k.name()
            );
            assert_eq!(
                r.stack_bytes,
                0,
                "{} uses a {}-byte stack frame on {arch}",
                k.name(),
                r.stack_bytes
            );
            assert!(
                r.registers > 0 && r.registers <= 255,
                "{}: {} registers",
                k.name(),
                r.registers
            );
        }
    }
    for m in Module::ALL {
        // PTX for every portable module; none for an architecture-specific one (sm_90a code
        // runs on sm_90 alone, which its CUBIN serves).
        assert_eq!(
            m.ptx().is_some_and(|p| p.starts_with(b"//")),
            !m.arch_specific(),
            "{}: PTX",
            m.file()
        );
    }
}

/// `Function : name` sections of `cuobjdump -sass` output.
fn sass_functions(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("Function : ") {
            if let Some((n, body)) = cur.take() {
                out.insert(n, body);
            }
            cur = Some((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = cur.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((n, body)) = cur {
        out.insert(n, body);
    }
    out
}

/// The instructions of a SASS function body: (address, opcode with its modifiers, operands),
/// predicate guards dropped — `/*0040*/   @!P0 IMMA.16832.S8.S8 R4, R8.ROW, R12.COL, R4 ;`.
fn sass_instructions(body: &str) -> Vec<(u64, String, String)> {
    body.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("/*")?;
            let (addr, code) = rest.split_once("*/")?;
            let addr = u64::from_str_radix(addr, 16).ok()?;
            let mut words = code.split(';').next()?.split_whitespace();
            let mut op = words.next()?;
            if op.starts_with('@') {
                op = words.next()?;
            }
            let base = op.split('.').next().unwrap_or("");
            if base.is_empty()
                || !base
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return None;
            }
            Some((addr, op.to_string(), words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Opcodes (the mnemonic before the first `.`) of some instructions with their counts.
fn opcode_counts<'a>(
    ins: impl IntoIterator<Item = &'a (u64, String, String)>,
) -> HashMap<String, usize> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for (_, op, _) in ins {
        *m.entry(op.split('.').next().unwrap_or("").to_string())
            .or_default() += 1;
    }
    m
}

/// Opcodes of a SASS function body with their counts, most frequent first.
fn opcode_mix(body: &str) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = opcode_counts(&sass_instructions(body))
        .into_iter()
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The `cuobjdump` CI installed (`INT8RT_CUOBJDUMP`), or `None` (skip) — a failure under
/// `INT8RT_REQUIRE_NVRTC=1`. Panics when the build embedded no CUBINs to inspect.
fn cuobjdump() -> Option<PathBuf> {
    let Ok(p) = std::env::var("INT8RT_CUOBJDUMP") else {
        assert!(
            !required(),
            "INT8RT_REQUIRE_NVRTC=1 needs INT8RT_CUOBJDUMP (scripts/ci-cuda-env.sh sets it)"
        );
        eprintln!("INT8RT_CUOBJDUMP not set; SASS checks skipped");
        return None;
    };
    if !registry::BUILT_WITH_NVRTC {
        panic!("no CUBINs to inspect: {}", registry::BUILD_NOTE);
    }
    Some(PathBuf::from(p))
}

/// The SASS of `module`'s CUBIN for `arch`, per function, written to and disassembled in a
/// temporary folder of this machine (the tests also run from the GPU bundle elsewhere).
fn module_sass(cuobjdump: &Path, module: Module, arch: u32) -> HashMap<String, String> {
    // One folder per call: the tests run in parallel and disassemble the same modules.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("int8rt-sass-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.sm_{arch}.cubin", module.file()));
    std::fs::write(
        &path,
        module.cubin(arch).expect("a CUBIN for every architecture"),
    )
    .unwrap();
    let out = std::process::Command::new(cuobjdump)
        .arg("-sass")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "cuobjdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sass_functions(&String::from_utf8_lossy(&out.stdout))
}

/// `f(kernel, arch, its SASS)` for every kernel on every CUBIN architecture of its module.
fn each_kernel_sass(cuobjdump: &Path, mut f: impl FnMut(KernelId, u32, &str)) {
    for m in Module::ALL {
        for &arch in registry::CUBIN_ARCHS {
            if m.cubin(arch).is_none() {
                // (an architecture-specific module: its own target only; none below a module's
                // minimum architecture, nor sm_75 for a module without code of its own there)
                assert!(
                    m.arch_specific()
                        || arch < m.min_arch()
                        || !m.cubin_targets().contains(&format!("sm_{arch}").as_str()),
                    "{}: no CUBIN for sm_{arch}",
                    m.file()
                );
                continue;
            }
            let funcs = module_sass(cuobjdump, *m, arch);
            for &k in KernelId::ALL.iter().filter(|k| k.module() == *m) {
                let body = funcs
                    .get(k.name())
                    .unwrap_or_else(|| panic!("{} missing from the sm_{arch} SASS", k.name()));
                f(k, arch, body);
            }
        }
    }
}

#[test]
fn dp4a_kernels_compile_to_idp4a() {
    let Some(cuobjdump) = cuobjdump() else {
        return;
    };
    let mut checked = 0;
    each_kernel_sass(&cuobjdump, |k, arch, body| {
        let n = body.matches("IDP.4A").count();
        if k.uses_dp4a() {
            assert!(n > 0, "{} on sm_{arch}: no IDP.4A in its SASS", k.name());
            eprintln!("{} sm_{arch}: {n} IDP.4A", k.name());
            checked += 1;
        }
        if k.uses_mma() {
            let mix = opcode_mix(body);
            let count = |op: &str| mix.iter().find(|(o, _)| o == op).map_or(0, |p| p.1);
            // The tiled kernels stage through shared memory (cp.async, ldmatrix); the
            // weight-streaming GEMV loads its fragments straight from global memory, and
            // its staged variant (gemm_stream_*) the weights so and the activations from
            // shared memory that cp.async filled (plain 16-byte shared loads).
            if arch < 80 {
                // sm_75 (the module's own CUBIN): no cp.async — synchronous copies, plain
                // shared stores — and every mma an m8n8k16, four per m16n8k32.
                assert_eq!(count("LDGSTS"), 0, "{} on sm_{arch}: LDGSTS", k.name());
                let imma = count("IMMA");
                assert!(
                    imma > 0 && body.matches("IMMA.8816").count() == imma,
                    "{} on sm_{arch}: {imma} IMMA, not all IMMA.8816",
                    k.name()
                );
            } else {
                assert_eq!(
                    body.matches("IMMA.8816").count(),
                    0,
                    "{} on sm_{arch}: IMMA.8816",
                    k.name()
                );
            }
            // The prefetching kernels (`gemv_mma_pf_*`, `gemm_stream_pf_*`) ask L2 for their
            // weights by bulk prefetches on sm_90 (below it the prefetch compiles to nothing);
            // no other kernel does.
            assert_eq!(
                count("UBLKPF") > 0,
                k.name().contains("_pf_") && arch >= 90,
                "{} on sm_{arch}: {} UBLKPF",
                k.name(),
                count("UBLKPF")
            );
            let staged_copy = if arch < 80 { "STS" } else { "LDGSTS" };
            let ops: &[&str] = if k.name().starts_with("gemm_stream") {
                &["IMMA", "LDG", staged_copy, "LDS"]
            } else if k.name().starts_with("gemv_mma_bulk") {
                // weights by bulk copies (UBLKCP) completing on mbarriers (SYNCS) into shared
                // memory, read back with LDS; activations by LDG
                &["IMMA", "LDG", "UBLKCP", "SYNCS", "LDS"]
            } else if k.module().file().starts_with("gemv_mma") {
                &["IMMA", "LDG"]
            } else {
                &["IMMA", "LDSM", staged_copy]
            };
            for &op in ops {
                assert!(
                    count(op) > 0,
                    "{} on sm_{arch}: no {op} in its SASS",
                    k.name()
                );
            }
            let total: usize = mix.iter().map(|p| p.1).sum();
            let top: Vec<String> = mix
                .iter()
                .take(12)
                .map(|(o, c)| format!("{o} {c}"))
                .collect();
            eprintln!(
                "{} sm_{arch}: {total} instructions; {}",
                k.name(),
                top.join(", ")
            );
            checked += 1;
        }
        if k.uses_wgmma() {
            // Hopper's warpgroup MMA (IGMMA) on operands cp.async staged (LDGSTS) and the
            // async-proxy fence — or, for the TMA kernels, tensor copies (UTMALDG) completing on
            // mbarriers (SYNCS) and no cp.async — the warpgroup's arrive / wait; no mma.sync and
            // no ldmatrix (wgmma reads shared memory itself).
            let mix = opcode_mix(body);
            let count = |op: &str| mix.iter().find(|(o, _)| o == op).map_or(0, |p| p.1);
            let ops: &[&str] = if k.uses_tma() {
                assert_eq!(count("LDGSTS"), 0, "{} on sm_{arch}a: LDGSTS", k.name());
                &["IGMMA", "UTMALDG", "SYNCS", "WARPGROUP"]
            } else {
                &["IGMMA", "LDGSTS", "WARPGROUP", "FENCE"]
            };
            for &op in ops {
                assert!(
                    count(op) > 0,
                    "{} on sm_{arch}a: no {op} in its SASS",
                    k.name()
                );
            }
            for op in ["IMMA", "LDSM"] {
                assert_eq!(count(op), 0, "{} on sm_{arch}a: {op}", k.name());
            }
            let ty = if k.name().ends_with("_u8") {
                "U8.S8"
            } else {
                "S8.S8"
            };
            let n = k.name().split('x').nth(1).and_then(|s| s.split('_').next());
            let want = format!("IGMMA.64x{}x32.{ty}", n.unwrap());
            assert_eq!(
                body.matches(&want).count(),
                count("IGMMA"),
                "{}: every IGMMA is {want}",
                k.name()
            );
            eprintln!("{} sm_{arch}a: {} IGMMA ({want})", k.name(), count("IGMMA"));
            checked += 1;
        }
    });
    assert!(checked > 0);
}

#[test]
fn peak_kernels_loop_over_exactly_the_measured_instruction() {
    let Some(cuobjdump) = cuobjdump() else {
        return;
    };
    for &arch in registry::CUBIN_ARCHS
        .iter()
        .filter(|&&a| a >= Module::Peak.min_arch())
    {
        let funcs = module_sass(&cuobjdump, Module::Peak, arch);
        for k in PeakKernel::ALL {
            let id = k.kernel();
            assert_eq!(id.module(), Module::Peak);
            let body = funcs
                .get(id.name())
                .unwrap_or_else(|| panic!("{} missing from the sm_{arch} SASS", id.name()));
            let mix = opcode_mix(body);
            let count = |op: &str| mix.iter().find(|(o, _)| o == op).map_or(0, |p| p.1);
            let (op, other) = match k {
                PeakKernel::Mma => ("IMMA", "IDP"),
                PeakKernel::Dp4a => ("IDP", "IMMA"),
            };
            assert_eq!(
                count(op) as u64,
                k.per_iteration(),
                "{} on sm_{arch}: {op} count is not one loop iteration's",
                id.name()
            );
            assert_eq!(count(other), 0, "{} on sm_{arch}: {other}", id.name());
            let want = if op == "IMMA" {
                "IMMA.16832.S8.S8"
            } else {
                "IDP.4A.S8.S8"
            };
            assert_eq!(body.matches(want).count() as u64, k.per_iteration());
            // Memory traffic only outside the loop: the seed loads and one store per thread.
            assert!(
                count("LDS") + count("LDSM") + count("LDGSTS") + count("LDL") + count("STL") == 0,
                "{} on sm_{arch}: shared or local memory traffic",
                id.name()
            );
            let top: Vec<String> = mix
                .iter()
                .take(8)
                .map(|(o, c)| format!("{o} {c}"))
                .collect();
            eprintln!("{} sm_{arch}: {}", id.name(), top.join(", "));
        }
    }
}

/// The kernels the host may launch overlapped with their predecessor (programmatic dependent
/// launch, `KernelId::waits_for_predecessor`) wait for it (`griddepcontrol.wait`, SASS `ACQBULK`)
/// before any global load but the weights' (the streaming-hinted `LDG.E.NA…`, bulk copies
/// `UBLKCP` or L2 bulk prefetches `UBLKPF`, immutable) and
/// before any global store, and let the next launch begin (`PREEXIT`, as does the activation
/// quantization before them); on sm_90 only — the sm_80 CUBIN has neither — and no other kernel
/// has them (the registry and the sources agree).
#[test]
fn overlapped_kernels_wait_before_touching_their_predecessors_data() {
    let Some(cuobjdump) = cuobjdump() else {
        return;
    };
    let mut checked = 0;
    each_kernel_sass(&cuobjdump, |k, arch, body| {
        let code: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("/*")?.split_once("*/"))
            .filter(|(a, _)| a.chars().all(|c| c.is_ascii_hexdigit()))
            .map(|(_, c)| c.trim())
            .collect();
        let wait = code.iter().position(|c| c.starts_with("ACQBULK"));
        let trigger = code.iter().any(|c| c.starts_with("PREEXIT"));
        assert_eq!(
            trigger,
            k.triggers_dependents() && arch >= 90,
            "{} on sm_{arch}: PREEXIT (griddepcontrol.launch_dependents) where the registry \
             says otherwise",
            k.name()
        );
        if !(k.waits_for_predecessor() && arch >= 90) {
            assert!(
                wait.is_none(),
                "{} on sm_{arch}: griddepcontrol.wait in a kernel the host never overlaps",
                k.name()
            );
            return;
        }
        let wait = wait.unwrap_or_else(|| panic!("{} on sm_{arch}: no ACQBULK", k.name()));
        let op = |c: &str| {
            let c = c
                .split_whitespace()
                .find(|w| !w.starts_with('@'))
                .unwrap_or("");
            c.to_string()
        };
        let mut weights_before = 0;
        for (i, c) in code.iter().enumerate().take(wait) {
            let o = op(c);
            // (the weights: streaming-hinted loads, bulk copies or tensor copies into shared
            // memory — the TMA tiles issue only their W boxes before the wait — or L2 bulk
            // prefetches)
            if ["LDG.E.NA", "UBLKCP", "UTMALDG", "UBLKPF"]
                .iter()
                .any(|p| o.starts_with(p))
            {
                weights_before += 1;
            }
            let touches_data = (o.starts_with("LDG") && !o.starts_with("LDG.E.NA"))
                || ["STG", "ATOM", "RED"].iter().any(|p| o.starts_with(p));
            assert!(
                !touches_data,
                "{} on sm_{arch}: `{c}` (instruction {i}) before the wait",
                k.name()
            );
        }
        assert!(
            weights_before > 0,
            "{} on sm_{arch}: no weight load in flight before the wait",
            k.name()
        );
        eprintln!(
            "{} sm_{arch}: {weights_before} weight loads issued before ACQBULK",
            k.name()
        );
        checked += 1;
    });
    assert!(checked > 0, "no overlapped kernel checked");
}

/// The instructions of a SASS body's main loop around its tensor-core instructions (opcode
/// `tensor_op`: `IMMA`, `IGMMA`): from the target of the first backward branch after the last
/// of them (a target before the first one) to that branch, as (opcode, count), with the loop's
/// length. `None` when there is no such loop.
fn tensor_loop_mix(body: &str, tensor_op: &str) -> Option<(usize, HashMap<String, usize>)> {
    let ins = sass_instructions(body);
    let tensor: Vec<usize> = (0..ins.len())
        .filter(|&i| ins[i].1.starts_with(tensor_op))
        .collect();
    let (&first, &last) = (tensor.first()?, tensor.last()?);
    let (head, end) = ins[last..]
        .iter()
        .enumerate()
        .find_map(|(d, (_, op, args))| {
            if !op.starts_with("BRA") {
                return None;
            }
            let target =
                u64::from_str_radix(args.rsplit(' ').next()?.trim_start_matches("0x"), 16).ok()?;
            (target <= ins[first].0).then_some((target, last + d))
        })?;
    let start = ins.iter().position(|(a, _, _)| *a == head)?;
    Some((end + 1 - start, opcode_counts(&ins[start..=end])))
}

/// The deep `mma.sync` tiles (128-byte stages, their copy rows' addresses held in registers:
/// `tile::OperandLoader`'s HOLD) keep their refill copies inside the main loop and issue few
/// instructions per stage: Nsight Compute found the 64 × 64 tile issue-bound on an H100 when its
/// 8 copies per stage took a 102-instruction block the loop branched to (182 per stage in all),
/// and the sliced one latency-bound on an H200 at 73 per stage and warp. Now their fragment
/// addresses are held too (one add of the stage's offset), the steady-state copies carry no
/// zero-fill predicate and the loop keeps byte offsets and one counter: 80 per stage for the
/// 64 × 64 tile, 128 for the 128 × 64 one, 48 and 72 for the sliced ones (8 warps, each with
/// half a stage's k steps and copies), on sm_80 and sm_90 alike, and none of them a LOP3 (the
/// swizzle's XOR and the unpacking of the rows' valid bits were) — bench/RESULTS-gpu-static.md.
/// The same for the 64-column `wgmma` tiles built in their shapes (addresses held, unpredicated
/// steady-state copies, each stage's descriptors one add from the operands' base descriptors:
/// 101 and 106 per stage on sm_90a; the one-warpgroup tile's descriptors never leave the uniform
/// registers, so no R2UR). The bounds leave room for a compiler update, not for the
/// per-copy address arithmetic of the loaders without HOLD.
#[test]
fn deep_tiles_refill_inside_a_short_main_loop() {
    let Some(cuobjdump) = cuobjdump() else {
        return;
    };
    // (module, kernel, its tensor-core opcode, copies per stage and thread, most instructions
    // per stage)
    let tiles = [
        (Module::GemmMma, "gemm_mma_64x64", "IMMA", 8usize, 84usize),
        (Module::GemmMma, "gemm_mma_128x64", "IMMA", 12, 134),
        (Module::GemmMma, "gemm_mma_64x64k2", "IMMA", 4, 52),
        (Module::GemmMma, "gemm_mma_128x64k2", "IMMA", 6, 76),
        (Module::GemmWgmma, "gemm_wgmma_64x64", "IGMMA", 8, 104),
        (Module::GemmWgmma, "gemm_wgmma_128x64", "IGMMA", 6, 110),
    ];
    // (kernels checked per row of `tiles`: a module whose CUBIN went missing must not pass)
    let mut checked = vec![0usize; tiles.len()];
    for &arch in registry::CUBIN_ARCHS.iter().filter(|&&a| a >= 80) {
        for module in [Module::GemmMma, Module::GemmWgmma] {
            if module.cubin(arch).is_none() {
                continue; // (the wgmma module: sm_90a alone)
            }
            let funcs = module_sass(&cuobjdump, module, arch);
            for (ti, &(_, tile, op, copies, most)) in
                tiles.iter().enumerate().filter(|(_, t)| t.0 == module)
            {
                for ty in ["s8", "u8"] {
                    checked[ti] += 1;
                    let name = format!("{tile}_{ty}");
                    let body = funcs
                        .get(&name)
                        .unwrap_or_else(|| panic!("{name} missing from the sm_{arch} SASS"));
                    let (len, mix) = tensor_loop_mix(body, op)
                        .unwrap_or_else(|| panic!("{name} on sm_{arch}: no loop around its {op}"));
                    let count = |op: &str| mix.get(op).copied().unwrap_or(0);
                    eprintln!(
                        "{name} sm_{arch}: main loop {len} instructions, {} {op}, {} LDSM, {} LDGSTS",
                        count(op),
                        count("LDSM"),
                        count("LDGSTS")
                    );
                    assert_eq!(
                        count("LDGSTS"),
                        copies,
                        "{name} on sm_{arch}: the refill is not in the loop"
                    );
                    assert!(
                        len <= most,
                        "{name} on sm_{arch}: {len} instructions per stage (at most {most})"
                    );
                    if tile == "gemm_wgmma_64x64" {
                        assert_eq!(
                            count("R2UR"),
                            0,
                            "{name} on sm_{arch}: descriptors moved into uniform registers per stage"
                        );
                    }
                    if op == "IMMA" {
                        assert_eq!(
                            count("LOP3"),
                            0,
                            "{name} on sm_{arch}: fragment offsets recomputed (the swizzle's XOR) \
                             or copy predicates unpacked in the main loop"
                        );
                    }
                }
            }
        }
    }
    for (t, n) in tiles.iter().zip(checked) {
        assert!(n > 0, "{}: no CUBIN checked", t.1);
    }
}
