//! tests/cuda_device.rs — device discovery on machines without a GPU: `Device::auto()` falls
//! back to the CPU with the reason and never panics; `Device::cuda(i)` is an error. The branch
//! "driver present, no device" runs against stand-in `libcuda.so.1` libraries built here with the
//! C compiler (functions that report `CUDA_ERROR_NO_DEVICE`, or zero devices), loaded in a child
//! process of this test binary through `LD_LIBRARY_PATH`.

#![cfg(all(feature = "cuda", target_os = "linux"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use int8rt::{Device, Error};

/// A stand-in libcuda: `cuInit` returns `init`, `cuDeviceGetCount` reports `count`.
fn stand_in(dir: &Path, init: i32, count: i32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("libcuda_stub.c");
    std::fs::write(
        &src,
        format!(
            r#"
static const char* msg = "stand-in libcuda for int8rt tests";
int cuInit(unsigned flags) {{ (void)flags; return {init}; }}
int cuDeviceGetCount(int* n) {{ *n = {count}; return 0; }}
int cuDriverGetVersion(int* v) {{ *v = 13000; return 0; }}
int cuGetErrorString(int e, const char** s) {{ (void)e; *s = msg; return 0; }}
int cuGetErrorName(int e, const char** s) {{ (void)e; *s = msg; return 0; }}
"#
        ),
    )
    .unwrap();
    let so = dir.join("libcuda.so.1");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .expect("running the C compiler");
    assert!(
        out.status.success(),
        "building the stand-in libcuda failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cudarc tries the unversioned name first: a real one elsewhere must not win.
    std::fs::copy(&so, dir.join("libcuda.so")).unwrap();
    dir.to_path_buf()
}

/// Run this test again in a child process with `LD_LIBRARY_PATH=dir` and the child role `role`.
fn run_child(dir: &Path, role: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "stand_in_libcuda",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LD_LIBRARY_PATH", dir)
        .env("INT8RT_STANDIN_ROLE", role)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("stand-in child ok: {role}")),
        "child `{role}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child's checks: a driver library is found, there is no usable device, nothing panics.
fn child(role: &str) {
    let expect = match role {
        "no-device" => "CUDA_ERROR_NO_DEVICE",
        "zero-devices" => "reports no CUDA device",
        "absent" => "libcuda.so could not be loaded",
        other => panic!("unknown role {other}"),
    };
    assert_eq!(int8rt::cuda::driver_library_present(), role != "absent");
    let d = Device::auto();
    assert!(!d.is_cuda(), "{d}");
    let why = d.cpu_reason().expect("auto() says why it chose the CPU");
    assert!(
        why.contains(expect),
        "reason `{why}` should mention `{expect}`"
    );
    match Device::cuda(0) {
        Err(Error::CudaUnavailable(r)) => assert!(r.contains(expect), "{r}"),
        other => panic!("Device::cuda(0) should be CudaUnavailable, got {other:?}"),
    }
    assert!(Device::from_spec("cuda:1").is_err());
    assert!(!Device::from_spec("auto").unwrap().is_cuda());
    println!("stand-in child ok: {role}");
}

#[test]
fn stand_in_libcuda() {
    if let Ok(role) = std::env::var("INT8RT_STANDIN_ROLE") {
        return child(&role);
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standin-libcuda");
    // Driver present, no device: cuInit fails with CUDA_ERROR_NO_DEVICE (100), as the real
    // driver does on a machine without a GPU.
    run_child(&stand_in(&base.join("no-device"), 100, 0), "no-device");
    // Driver initialises but counts zero devices.
    run_child(&stand_in(&base.join("zero-devices"), 0, 0), "zero-devices");
    // No driver library at all: only checkable where the machine has none.
    if !int8rt::cuda::driver_library_present() {
        let empty = base.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        run_child(&empty, "absent");
    }
}

#[test]
fn device_specs_parse_and_never_panic() {
    assert!(!Device::cpu().is_cuda());
    assert_eq!(Device::cpu().to_string(), "cpu");
    assert!(Device::from_spec("cpu").is_ok());
    assert!(matches!(
        Device::from_spec("tpu"),
        Err(Error::InvalidParam { .. })
    ));
    assert!(matches!(
        Device::from_spec("cuda:x"),
        Err(Error::InvalidParam { .. })
    ));
    // Whatever this machine has, auto() answers and cuda(i) is Ok or CudaUnavailable.
    let d = Device::auto();
    assert_eq!(d.is_cuda(), d.cpu_reason().is_none());
    match Device::cuda(1000) {
        Err(Error::CudaUnavailable(_)) => {}
        other => panic!("device 1000 should not exist: {other:?}"),
    }
}

#[test]
fn gpu_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<int8rt::cuda::CudaQuantLinear>();
    check::<int8rt::cuda::CudaWeights>();
    check::<int8rt::cuda::CudaDevice>();
    // (a pending forward may be waited for on another thread than the one that enqueued it;
    // builds without the `cuda` feature have no such type)
    #[cfg(feature = "cuda")]
    check::<int8rt::cuda::PendingForward<'static>>();
}
