//! cuda/nvrtc_compile.rs — compile one kernel source with NVRTC into PTX or a CUBIN, keeping the
//! program log. Shared, through `#[path]`, by `build.rs` (kernels compiled at build time and
//! embedded) and by the crate's run-time fallback (`cuda::module`, when the build had no
//! NVRTC), so both compile with the same options.
//!
//! The caller must have checked that libnvrtc can be loaded ([`nvrtc_present`]): cudarc panics
//! on the first NVRTC call otherwise.

#![allow(dead_code)]

use std::ffi::{c_char, CString};

use cudarc::nvrtc::sys;

/// What to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// PTX for `compute_<cc>` (JIT-compiled by the driver for any newer GPU).
    Ptx(u32),
    /// A CUBIN for exactly `sm_<cc>`, with ptxas' resource report in the log.
    Cubin(u32),
    /// A CUBIN for `sm_<cc>a`: `sm_<cc>` with its architecture-specific features (sm_90a's
    /// `wgmma`), which runs on exactly that architecture.
    CubinArchSpecific(u32),
}

impl Target {
    /// `compute_61`, `sm_90`, `sm_90a`, ...
    pub fn arch(self) -> String {
        match self {
            Target::Ptx(cc) => format!("compute_{cc}"),
            Target::Cubin(cc) => format!("sm_{cc}"),
            Target::CubinArchSpecific(cc) => format!("sm_{cc}a"),
        }
    }
}

/// A compiled image and NVRTC's log.
pub struct Compiled {
    pub image: Vec<u8>,
    pub log: String,
}

/// A failed compilation: the options used and NVRTC's log (or the failing call).
#[derive(Debug)]
pub struct CompileFailure {
    pub options: Vec<String>,
    pub log: String,
}

/// Whether libnvrtc can be loaded (dlopen of each candidate name; call once and cache).
pub fn nvrtc_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate names and closes them; it
    // touches no NVRTC state.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's `(major, minor)` version. Only after [`nvrtc_present`] returned true.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: libnvrtc is present (caller's contract); both pointers are valid for writes.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    (r == sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// The options every kernel is compiled with: the architecture (NVRTC has no default that
/// knows `__dp4a`), C++17, no FMA contraction anywhere (the epilogue is specified operation by
/// operation), and, for CUBINs, ptxas' verbose resource report.
pub fn options(target: Target) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={}", target.arch()),
        "-std=c++17".to_string(),
        "--fmad=false".to_string(),
        "-DI8RT_NVRTC=1".to_string(),
    ];
    if let Target::Cubin(_) | Target::CubinArchSpecific(_) = target {
        o.push("--ptxas-options=-v".to_string());
    }
    o
}

/// Compile `source` (named `name` in diagnostics) with `headers` available to `#include "..."`.
/// Only after [`nvrtc_present`] returned true.
pub fn compile(
    name: &str,
    source: &str,
    headers: &[(&str, &str)],
    target: Target,
) -> Result<Compiled, CompileFailure> {
    let options = options(target);
    let fail = |log: String| CompileFailure {
        options: options.clone(),
        log,
    };
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| fail(format!("`{name}`: a NUL byte in a source or header")))
    };
    let src = cstr(source)?;
    let cname = cstr(name)?;
    let hdr_src: Vec<CString> = headers
        .iter()
        .map(|(_, s)| cstr(s))
        .collect::<Result<_, _>>()?;
    let hdr_name: Vec<CString> = headers
        .iter()
        .map(|(n, _)| cstr(n))
        .collect::<Result<_, _>>()?;
    let hdr_src_p: Vec<*const c_char> = hdr_src.iter().map(|s| s.as_ptr()).collect();
    let hdr_name_p: Vec<*const c_char> = hdr_name.iter().map(|s| s.as_ptr()).collect();
    let opt_c: Vec<CString> = options.iter().map(|o| cstr(o)).collect::<Result<_, _>>()?;
    let opt_p: Vec<*const c_char> = opt_c.iter().map(|s| s.as_ptr()).collect();

    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer comes from a CString alive until the end of this function; the
    // header arrays both have `headers.len()` entries; `prog` is written by the call.
    let r = unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            src.as_ptr(),
            cname.as_ptr(),
            headers.len() as i32,
            hdr_src_p.as_ptr(),
            hdr_name_p.as_ptr(),
        )
    };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail(format!("nvrtcCreateProgram failed: {r:?}")));
    }
    // SAFETY: `prog` was created above and is destroyed once, at the end of this block; the
    // option pointers outlive the call; the output buffers are sized by the matching *Size call.
    let out = unsafe {
        let compiled = sys::nvrtcCompileProgram(prog, opt_p.len() as i32, opt_p.as_ptr());
        let mut log_len = 0usize;
        let mut log = String::new();
        if sys::nvrtcGetProgramLogSize(prog, &mut log_len) == sys::nvrtcResult::NVRTC_SUCCESS
            && log_len > 1
        {
            let mut buf = vec![0u8; log_len];
            if sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char)
                == sys::nvrtcResult::NVRTC_SUCCESS
            {
                buf.truncate(log_len - 1);
                log = String::from_utf8_lossy(&buf).into_owned();
            }
        }
        let result = if compiled != sys::nvrtcResult::NVRTC_SUCCESS {
            Err(fail(format!("{compiled:?}\n{log}")))
        } else {
            let mut size = 0usize;
            let image = match target {
                Target::Ptx(_) => {
                    let r = sys::nvrtcGetPTXSize(prog, &mut size);
                    let mut buf = vec![0u8; size];
                    match (r, sys::nvrtcGetPTX(prog, buf.as_mut_ptr() as *mut c_char)) {
                        (sys::nvrtcResult::NVRTC_SUCCESS, sys::nvrtcResult::NVRTC_SUCCESS) => {
                            Ok(buf)
                        }
                        (a, b) => Err(fail(format!("nvrtcGetPTX failed: {a:?} {b:?}"))),
                    }
                }
                Target::Cubin(_) | Target::CubinArchSpecific(_) => {
                    let r = sys::nvrtcGetCUBINSize(prog, &mut size);
                    let mut buf = vec![0u8; size];
                    match (r, sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char)) {
                        (sys::nvrtcResult::NVRTC_SUCCESS, sys::nvrtcResult::NVRTC_SUCCESS) => {
                            Ok(buf)
                        }
                        (a, b) => Err(fail(format!("nvrtcGetCUBIN failed: {a:?} {b:?}"))),
                    }
                }
            };
            image.map(|image| Compiled { image, log })
        };
        sys::nvrtcDestroyProgram(&mut prog);
        result
    };
    out
}

/// One kernel's resources as ptxas reported them in a CUBIN compile log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub kernel: String,
    pub registers: u32,
    pub smem_bytes: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

/// Parse ptxas' `-v` report ("Compiling entry function 'k'", "N bytes stack frame, N bytes
/// spill stores, N bytes spill loads", "Used N registers, ... N bytes smem").
pub fn parse_resources(log: &str) -> Vec<Resources> {
    fn num_before(line: &str, unit: &str) -> Option<u32> {
        let i = line.find(unit)?;
        line[..i].split_whitespace().last()?.parse().ok()
    }
    let mut out: Vec<Resources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(Resources {
                kernel: name,
                ..Default::default()
            });
        } else if let Some(cur) = out.last_mut() {
            if line.contains("bytes stack frame") {
                cur.stack_bytes = num_before(line, " bytes stack frame").unwrap_or(0);
                cur.spill_stores = num_before(line, " bytes spill stores").unwrap_or(0);
                cur.spill_loads = num_before(line, " bytes spill loads").unwrap_or(0);
            } else if line.contains("Used ") && line.contains(" registers") {
                cur.registers = num_before(line, " registers").unwrap_or(0);
                cur.smem_bytes = num_before(line, " bytes smem").unwrap_or(0);
            }
        }
    }
    out
}
