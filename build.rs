//! build.rs — turns `kernels/*.cu` into the typed kernel registry (`$OUT_DIR/kernels.rs`,
//! included by `src/cuda/registry.rs`) and, when libnvrtc can be loaded, compiles every kernel
//! module with NVRTC: PTX for `compute_61` (the dp4a kernels need only sm_61; a module that
//! needs more says so with a `// I8RT_MIN_ARCH <cc>` line, e.g. the bulk-copy GEMV's 90, and
//! its PTX targets that) and CUBINs for `sm_80` and `sm_90`, written to `$OUT_DIR/kernels/` and embedded with
//! `include_bytes!`. A module whose line names an architecture-specific target (`90a`: Hopper's
//! `wgmma`) gets one CUBIN for exactly that target and no PTX. A module with code of its own for
//! an older architecture (the tensor-core GEMMs: `// I8RT_MIN_ARCH 75` and `// I8RT_PTX_ARCH 80`)
//! gets a CUBIN for that one too, and PTX from the newer one, so newer GPUs never JIT the older
//! code. A kernel that fails to compile fails the build with NVRTC's log. Without
//! NVRTC the sources alone are embedded and the crate compiles them at run time for the GPU it
//! finds (cached). The kernel sources are always embedded (run-time fallback for architectures
//! with neither CUBIN nor a loadable PTX).
//!
//! Environment: `INT8RT_NVRTC=off` skips NVRTC (to exercise the run-time path);
//! `INT8RT_REQUIRE_NVRTC=1` (CI) makes a missing libnvrtc an error instead of a warning.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[cfg(feature = "cuda")]
#[path = "src/cuda/nvrtc_compile.rs"]
mod nvrtc_compile;

/// Architectures: PTX for this compute capability (the oldest with dp4a), CUBINs for these.
/// NVRTC 13 no longer targets anything older than sm_75, so its PTX is for compute_75.
const PTX_ARCH: u32 = 61;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const PTX_ARCH_NVRTC13: u32 = 75;
const CUBIN_ARCHS: [u32; 2] = [80, 90];

struct Entry {
    name: String,
    params: String,
    /// Blocks per thread block cluster along x (1: launched without clusters).
    cluster: u32,
}

struct Module {
    stem: String,
    file: PathBuf,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    source: String,
    entries: Vec<Entry>,
    /// The oldest architecture the module compiles for (`// I8RT_MIN_ARCH 80` in the source;
    /// default: the dp4a architecture, 61). Its PTX targets `compute_<max(PTX arch, this)>`.
    min_arch: u32,
    /// `// I8RT_MIN_ARCH 90a`: the module uses architecture-specific features and is compiled
    /// for `sm_<min_arch>a` alone (one CUBIN, no PTX); it runs on exactly `sm_<min_arch>`.
    arch_specific: bool,
    /// `// I8RT_PTX_ARCH <cc>` (default: `min_arch`): the module's PTX targets `compute_<cc>` and
    /// its minimum architecture, when older and not a CUBIN architecture of the build, gets a
    /// CUBIN of its own — so code written for that older architecture alone (the tensor-core
    /// kernels' sm_75 build: synchronous copies, `m8n8k16`) runs there and never reaches a newer
    /// GPU through the PTX.
    ptx_min: u32,
}

/// The `// I8RT_MIN_ARCH <cc>[a]` line of a kernel source, if any: `(cc, architecture-specific)`.
fn min_arch(source: &str, file: &Path) -> (u32, bool) {
    for line in source.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("// I8RT_MIN_ARCH ") {
            let rest = rest.trim();
            let (digits, specific) = match rest.strip_suffix('a') {
                Some(d) => (d, true),
                None => (rest, false),
            };
            let cc = digits.parse().unwrap_or_else(|_| {
                panic!("{}: malformed I8RT_MIN_ARCH line: {line}", file.display())
            });
            if specific && !CUBIN_ARCHS.contains(&cc) {
                panic!(
                    "{}: sm_{cc}a is not one of the build's CUBIN architectures {CUBIN_ARCHS:?}",
                    file.display()
                );
            }
            return (cc, specific);
        }
    }
    (PTX_ARCH, false)
}

/// The `// I8RT_PTX_ARCH <cc>` line of a kernel source: its PTX target when newer than its
/// minimum architecture (`min_arch`, returned when there is no such line).
fn ptx_min(source: &str, file: &Path, min_arch: u32) -> u32 {
    for line in source.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("// I8RT_PTX_ARCH ") {
            let cc: u32 = rest.trim().parse().unwrap_or_else(|_| {
                panic!("{}: malformed I8RT_PTX_ARCH line: {line}", file.display())
            });
            if cc < min_arch {
                panic!(
                    "{}: I8RT_PTX_ARCH {cc} is older than the module's minimum, sm_{min_arch}",
                    file.display()
                );
            }
            return cc;
        }
    }
    min_arch
}

/// The CUBINs a module is built as: `(cc, "sm_<cc>[a]")` — the build's CUBIN architectures the
/// module runs on (none below its minimum), and its minimum itself when its PTX starts above it
/// (`I8RT_PTX_ARCH`).
fn cubin_targets(m: &Module) -> Vec<(u32, String)> {
    if m.arch_specific {
        vec![(m.min_arch, format!("sm_{}a", m.min_arch))]
    } else {
        let own =
            (m.ptx_min > m.min_arch && !CUBIN_ARCHS.contains(&m.min_arch)).then_some(m.min_arch);
        own.into_iter()
            .chain(CUBIN_ARCHS.iter().copied().filter(|&c| c >= m.min_arch))
            .map(|c| (c, format!("sm_{c}")))
            .collect()
    }
}

fn camel(s: &str) -> String {
    s.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `I8RT_ENTRY(name, Params, threads)`, `I8RT_ENTRY_MIN_BLOCKS(name, Params, threads, blocks)`,
/// `I8RT_ENTRY_GRID_CONST(name, Params, threads, blocks)` and
/// `I8RT_ENTRY_CLUSTER(name, Params, threads, blocks, cluster)` lines of a kernel source.
fn entries(source: &str, file: &Path) -> Vec<Entry> {
    let mut v = Vec::new();
    for line in source.lines() {
        let line_t = line.trim_start();
        let clustered = line_t.starts_with("I8RT_ENTRY_CLUSTER(");
        let Some(rest) = line_t
            .strip_prefix("I8RT_ENTRY(")
            .or_else(|| line_t.strip_prefix("I8RT_ENTRY_MIN_BLOCKS("))
            .or_else(|| line_t.strip_prefix("I8RT_ENTRY_GRID_CONST("))
            .or_else(|| line_t.strip_prefix("I8RT_ENTRY_CLUSTER("))
        else {
            continue;
        };
        let args: Vec<&str> = rest.split([',', ')']).map(str::trim).collect();
        if args.len() < 3 || args[0].is_empty() || args[1].is_empty() {
            panic!("{}: malformed I8RT_ENTRY line: {line}", file.display());
        }
        // The cluster size: a literal, so that the host knows it without compiling the kernel.
        let cluster = if clustered {
            args.get(4)
                .and_then(|c| c.parse::<u32>().ok())
                .filter(|c| (1..=8).contains(c))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: I8RT_ENTRY_CLUSTER needs a literal cluster size of 1 .. 8: {line}",
                        file.display()
                    )
                })
        } else {
            1
        };
        v.push(Entry {
            name: args[0].to_string(),
            params: args[1].to_string(),
            cluster,
        });
    }
    v
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let kdir = manifest.join("kernels");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cuda/nvrtc_compile.rs");
    println!("cargo:rerun-if-changed=kernels");
    for v in ["LD_LIBRARY_PATH", "INT8RT_NVRTC", "INT8RT_REQUIRE_NVRTC"] {
        println!("cargo:rerun-if-env-changed={v}");
    }

    let mut modules = Vec::new();
    let mut headers = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&kdir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kdir.display()))
        .map(|e| e.expect("kernels/ entry").path())
        .collect();
    files.sort();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        println!("cargo:rerun-if-changed={}", f.display());
        if name.ends_with(".cuh") {
            let src =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            headers.insert(name, f.clone());
            drop(src);
        } else if let Some(stem) = name.strip_suffix(".cu") {
            let source =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let entries = entries(&source, &f);
            let (min_arch, arch_specific) = min_arch(&source, &f);
            let ptx_min = ptx_min(&source, &f, min_arch);
            modules.push(Module {
                stem: stem.to_string(),
                file: f.clone(),
                source,
                entries,
                min_arch,
                arch_specific,
                ptx_min,
            });
        }
    }

    // NVRTC at build time.
    let kout = out_dir.join("kernels");
    std::fs::create_dir_all(&kout).expect("create $OUT_DIR/kernels");
    let (nvrtc_note, compiled, ptx_arch) = compile_all(&modules, &headers, &kout);

    // The registry.
    let mut g = String::new();
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    writeln!(
        g,
        "// Generated by build.rs from kernels/*.cu. Do not edit."
    )
    .unwrap();
    writeln!(
        g,
        "/// Every kernel entry point (`I8RT_ENTRY` in `kernels/*.cu`)."
    )
    .unwrap();
    writeln!(
        g,
        "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum KernelId {{"
    )
    .unwrap();
    for m in &modules {
        for e in &m.entries {
            writeln!(
                g,
                "    /// `{}` in `kernels/{}.cu`, parameters `{}`.",
                e.name, m.stem, e.params
            )
            .unwrap();
            writeln!(g, "    {},", camel(&e.name)).unwrap();
        }
    }
    writeln!(g, "}}\n\nimpl KernelId {{").unwrap();
    writeln!(
        g,
        "    /// Every kernel.\n    pub const ALL: &'static [KernelId] = &["
    )
    .unwrap();
    for m in &modules {
        for e in &m.entries {
            writeln!(g, "        KernelId::{},", camel(&e.name)).unwrap();
        }
    }
    writeln!(g, "    ];\n    /// The entry point's name in the module.\n    pub const fn name(self) -> &'static str {{\n        match self {{").unwrap();
    for m in &modules {
        for e in &m.entries {
            writeln!(
                g,
                "            KernelId::{} => {:?},",
                camel(&e.name),
                e.name
            )
            .unwrap();
        }
    }
    writeln!(g, "        }}\n    }}\n    /// The module (source file) that defines it.\n    pub const fn module(self) -> Module {{\n        match self {{").unwrap();
    for m in &modules {
        for e in &m.entries {
            writeln!(
                g,
                "            KernelId::{} => Module::{},",
                camel(&e.name),
                camel(&m.stem)
            )
            .unwrap();
        }
    }
    writeln!(g, "        }}\n    }}\n    /// The name of its parameter struct (`kernels/params.cuh`).\n    pub const fn params(self) -> &'static str {{\n        match self {{").unwrap();
    for m in &modules {
        for e in &m.entries {
            writeln!(
                g,
                "            KernelId::{} => {:?},",
                camel(&e.name),
                e.params
            )
            .unwrap();
        }
    }
    writeln!(g, "        }}\n    }}\n    /// Blocks per thread block cluster, along x (`I8RT_ENTRY_CLUSTER`; 1: no clusters): the\n    /// launch grid's x must be a multiple of it.\n    pub const fn cluster(self) -> u32 {{\n        match self {{").unwrap();
    for m in &modules {
        for e in &m.entries {
            writeln!(
                g,
                "            KernelId::{} => {},",
                camel(&e.name),
                e.cluster
            )
            .unwrap();
        }
    }
    writeln!(g, "        }}\n    }}\n}}\n").unwrap();

    writeln!(g, "/// Every kernel module (one per `kernels/*.cu`).").unwrap();
    writeln!(
        g,
        "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum Module {{"
    )
    .unwrap();
    for m in &modules {
        writeln!(
            g,
            "    /// `kernels/{}.cu`.\n    {},",
            m.stem,
            camel(&m.stem)
        )
        .unwrap();
    }
    writeln!(
        g,
        "}}\n\nimpl Module {{\n    /// Every module.\n    pub const ALL: &'static [Module] = &["
    )
    .unwrap();
    for m in &modules {
        writeln!(g, "        Module::{},", camel(&m.stem)).unwrap();
    }
    writeln!(g, "    ];\n    /// The source file name.\n    pub const fn file(self) -> &'static str {{\n        match self {{").unwrap();
    for m in &modules {
        writeln!(
            g,
            "            Module::{} => \"{}.cu\",",
            camel(&m.stem),
            m.stem
        )
        .unwrap();
    }
    writeln!(g, "        }}\n    }}\n    /// The embedded source (for the run-time NVRTC fallback).\n    pub const fn source(self) -> &'static str {{\n        match self {{").unwrap();
    for m in &modules {
        writeln!(
            g,
            "            Module::{} => include_str!({}),",
            camel(&m.stem),
            q(&m.file)
        )
        .unwrap();
    }
    writeln!(g, "        }}\n    }}\n    /// The oldest compute capability (major · 10 + minor) the module's kernels run on.\n    pub const fn min_arch(self) -> u32 {{\n        match self {{").unwrap();
    for m in &modules {
        writeln!(
            g,
            "            Module::{} => {},",
            camel(&m.stem),
            m.min_arch
        )
        .unwrap();
    }
    writeln!(g, "        }}\n    }}\n    /// Whether the module uses architecture-specific features (`// I8RT_MIN_ARCH 90a`): built\n    /// for `sm_<min_arch()>a` only, it runs on exactly that architecture and has no PTX.\n    pub const fn arch_specific(self) -> bool {{\n        match self {{").unwrap();
    for m in &modules {
        writeln!(
            g,
            "            Module::{} => {},",
            camel(&m.stem),
            m.arch_specific
        )
        .unwrap();
    }
    writeln!(g, "        }}\n    }}\n    /// The CUBIN targets the module is built for: `sm_80`, `sm_90` (or `sm_90a` alone; `sm_75`\n    /// too for a module that runs there with code of its own, `I8RT_PTX_ARCH`).\n    pub const fn cubin_targets(self) -> &'static [&'static str] {{\n        match self {{").unwrap();
    for m in &modules {
        let t: Vec<String> = cubin_targets(m).iter().map(|t| t.1.clone()).collect();
        writeln!(g, "            Module::{} => &{t:?},", camel(&m.stem)).unwrap();
    }
    writeln!(g, "        }}\n    }}\n    /// The `compute_<cc>` its PTX targets: the build's PTX architecture, or the module's minimum\n    /// (or its `I8RT_PTX_ARCH`) when newer.\n    pub const fn ptx_arch(self) -> u32 {{\n        match self {{").unwrap();
    for m in &modules {
        writeln!(
            g,
            "            Module::{} => {},",
            camel(&m.stem),
            ptx_arch.max(m.ptx_min)
        )
        .unwrap();
    }
    writeln!(g, "        }}\n    }}\n    /// PTX for `compute_<ptx_arch()>`, when NVRTC ran at build time.\n    pub fn ptx(self) -> Option<&'static [u8]> {{\n        match self {{").unwrap();
    for m in &modules {
        let p = kout.join(format!(
            "{}.compute_{}.ptx",
            m.stem,
            ptx_arch.max(m.ptx_min)
        ));
        if compiled && !m.arch_specific {
            writeln!(
                g,
                "            Module::{} => Some(include_bytes!({})),",
                camel(&m.stem),
                q(&p)
            )
            .unwrap();
        } else {
            writeln!(g, "            Module::{} => None,", camel(&m.stem)).unwrap();
        }
    }
    writeln!(g, "        }}\n    }}\n    /// The CUBIN for `sm_<cc>` (cc one of CUBIN_ARCHS; an architecture-specific module's\n    /// `sm_<cc>a` one at its own cc), when NVRTC ran at build time.\n    pub fn cubin(self, cc: u32) -> Option<&'static [u8]> {{").unwrap();
    if compiled {
        writeln!(g, "        match (self, cc) {{").unwrap();
        for m in &modules {
            for (cc, arch) in cubin_targets(m) {
                let p = kout.join(format!("{}.{arch}.cubin", m.stem));
                writeln!(
                    g,
                    "            (Module::{}, {cc}) => Some(include_bytes!({})),",
                    camel(&m.stem),
                    q(&p)
                )
                .unwrap();
            }
        }
        writeln!(g, "            _ => None,\n        }}").unwrap();
    } else {
        writeln!(g, "        let _ = (self, cc);\n        None").unwrap();
    }
    writeln!(g, "    }}\n}}\n").unwrap();

    writeln!(g, "/// Headers the kernels include, as NVRTC is given them.\npub const HEADERS: &[(&str, &str)] = &[").unwrap();
    for (name, path) in &headers {
        writeln!(g, "    ({name:?}, include_str!({})),", q(path)).unwrap();
    }
    writeln!(
        g,
        "];\n/// PTX target of the build-time compile.\npub const PTX_ARCH: u32 = {ptx_arch};"
    )
    .unwrap();
    // Every architecture some module has a portable CUBIN for (a module's own sm_75 included).
    let mut all_cubins: Vec<u32> = modules
        .iter()
        .filter(|m| !m.arch_specific)
        .flat_map(|m| cubin_targets(m).into_iter().map(|t| t.0))
        .collect();
    all_cubins.sort_unstable();
    all_cubins.dedup();
    writeln!(g, "/// CUBIN targets of the build-time compile (a module has those of `Module::cubin_targets`).\npub const CUBIN_ARCHS: &[u32] = &{all_cubins:?};").unwrap();
    writeln!(g, "/// Whether NVRTC compiled the kernels at build time.\npub const BUILT_WITH_NVRTC: bool = {compiled};").unwrap();
    writeln!(g, "/// How the kernels were built (NVRTC version, or why not).\npub const BUILD_NOTE: &str = {nvrtc_note:?};").unwrap();
    let report = if compiled {
        format!("include_str!({})", q(&kout.join("resources.txt")))
    } else {
        "\"\"".to_string()
    };
    writeln!(g, "/// ptxas' resource report per CUBIN (`arch<TAB>kernel<TAB>registers<TAB>smem<TAB>stack<TAB>spill stores<TAB>spill loads`).\npub const RESOURCE_REPORT: &str = {report};").unwrap();
    std::fs::write(out_dir.join("kernels.rs"), g).expect("write kernels.rs");
}

/// Compile every module for every target; `(note, compiled)`.
#[cfg(feature = "cuda")]
fn compile_all(
    modules: &[Module],
    headers: &BTreeMap<String, PathBuf>,
    kout: &Path,
) -> (String, bool, u32) {
    use nvrtc_compile::{compile, nvrtc_present, nvrtc_version, parse_resources, Target};
    let required = std::env::var("INT8RT_REQUIRE_NVRTC").as_deref() == Ok("1");
    if std::env::var("INT8RT_NVRTC").as_deref() == Ok("off") {
        if required {
            panic!("INT8RT_REQUIRE_NVRTC=1 contradicts INT8RT_NVRTC=off");
        }
        return (
            "INT8RT_NVRTC=off: kernels are compiled at run time".into(),
            false,
            PTX_ARCH,
        );
    }
    if !nvrtc_present() {
        let msg = "libnvrtc was not found (install nvidia-cuda-nvrtc-cu12 and point LD_LIBRARY_PATH at it): \
                   kernels will be compiled at run time on the GPU host";
        if required {
            panic!("INT8RT_REQUIRE_NVRTC=1 but {msg}");
        }
        println!("cargo:warning={msg}");
        return (msg.into(), false, PTX_ARCH);
    }
    let ver = nvrtc_version();
    let version = ver.map_or("unknown".to_string(), |(a, b)| format!("{a}.{b}"));
    let ptx_arch = if ver.is_some_and(|(major, _)| major >= 13) {
        PTX_ARCH_NVRTC13
    } else {
        PTX_ARCH
    };
    let hdr: Vec<(String, String)> = headers
        .iter()
        .map(|(n, p)| (n.clone(), std::fs::read_to_string(p).expect("header")))
        .collect();
    let hdr_ref: Vec<(&str, &str)> = hdr.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    // Every (module, target) pair is one NVRTC program; they compile on worker threads (NVRTC
    // is thread-safe; two threads took a pair of the GEMM module's CUBINs from 21 s to 15 s on
    // a 2-vCPU machine), the longest sources first, and are written and reported in order.
    let mut jobs: Vec<(&Module, Target)> = Vec::new();
    for m in modules {
        if m.arch_specific {
            jobs.push((m, Target::CubinArchSpecific(m.min_arch)));
        } else {
            jobs.push((m, Target::Ptx(ptx_arch.max(m.ptx_min))));
            jobs.extend(
                cubin_targets(m)
                    .into_iter()
                    .map(|(c, _)| (m, Target::Cubin(c))),
            );
        }
    }
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].0.source.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each worker returns what it compiled, by job index; gathered back into job order.
    let mut results: Vec<Option<Result<nvrtc_compile::Compiled, String>>> =
        jobs.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(jobs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&j) = order.get(i) else { break done };
                        let (m, t) = jobs[j];
                        let fname = format!("{}.cu", m.stem);
                        let r = compile(&fname, &m.source, &hdr_ref, t).map_err(|f| {
                            format!(
                                "NVRTC {version} failed to compile kernels/{fname} for {} with {:?}:\n{}",
                                t.arch(),
                                f.options,
                                f.log
                            )
                        });
                        done.push((j, r));
                    }
                })
            })
            .collect();
        for h in handles {
            for (j, r) in h.join().expect("an NVRTC worker panicked") {
                results[j] = Some(r);
            }
        }
    });
    let mut report = String::new();
    for (&(m, t), r) in jobs.iter().zip(results) {
        let c = match r.expect("every job ran") {
            Ok(c) => c,
            Err(msg) => panic!("{msg}"),
        };
        let path = match t {
            Target::Ptx(cc) => kout.join(format!("{}.compute_{cc}.ptx", m.stem)),
            Target::Cubin(_) | Target::CubinArchSpecific(_) => {
                kout.join(format!("{}.{}.cubin", m.stem, t.arch()))
            }
        };
        std::fs::write(&path, &c.image).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Target::Cubin(_) | Target::CubinArchSpecific(_) = t {
            let arch = t.arch();
            for r in parse_resources(&c.log) {
                writeln!(
                    report,
                    "{arch}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.kernel,
                    r.registers,
                    r.smem_bytes,
                    r.stack_bytes,
                    r.spill_stores,
                    r.spill_loads
                )
                .unwrap();
                if r.spill_stores > 0 || r.spill_loads > 0 {
                    println!(
                        "cargo:warning=kernel {} spills on {arch}: {} bytes stored, {} loaded",
                        r.kernel, r.spill_stores, r.spill_loads
                    );
                }
            }
        }
    }
    std::fs::write(kout.join("resources.txt"), report).expect("write resources.txt");
    (
        format!("NVRTC {version} at build time: PTX compute_{ptx_arch}, CUBIN sm_80/sm_90 (sm_90a for wgmma, sm_75 for the tensor-core GEMMs)"),
        true,
        ptx_arch,
    )
}

#[cfg(not(feature = "cuda"))]
fn compile_all(_: &[Module], _: &BTreeMap<String, PathBuf>, _: &Path) -> (String, bool, u32) {
    ("built without the `cuda` feature".into(), false, PTX_ARCH)
}
