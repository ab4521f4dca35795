//! cuda/sim_driver_tests.rs — (test builds with `cuda` only) the driver side of the backend on
//! the simulated driver: `kernels/sim/libcuda_sim.cpp` built with every kernel as a stand-in
//! `libcuda.so.1`, loaded by cudarc in a child process of this test binary through
//! `LD_LIBRARY_PATH`. What the simulation executor (`sim.rs`) cannot reach runs here: cudarc,
//! [`CudaDevice`], the `CudaExec` launches (plain and overlapped), tensor-map encoding, module
//! loading and the layer's device paths — bits against the reference, then the census of driver
//! calls a steady-state forward makes (allocations, launches, copies, synchronizations), which
//! the library counts by entry point, and that of a steady-state `CudaWeights::gemm` (one
//! launch). `scripts/sim-driver.sh` runs any program (tests/gpu.rs,
//! the latency example) the same way.

use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::exec::Exec;
use super::sim::{build_cxx, sources_hash, CxxBuild};
use crate::cuda::cudarc::driver::CudaStream;
use crate::cuda::{
    CudaActScales, CudaActivations, CudaDevice, CudaOut, CudaQuantLinear, CudaWeights, GemmKernel,
    MmaConfig, MmaTile,
};
use crate::gemm::Bias;
use crate::gemm::{Context, OutBuf, Path};
use crate::nn::{ActivationQuant, LinearConfig, QuantLinear};
use crate::quant::{Granularity, Scheme};

const CHILD_ENV: &str = "INT8RT_SIMDRV_CHILD";
const CHILD_TEST: &str = "cuda::sim_driver_tests::layer_runs_on_the_simulated_driver";

/// Build the simulated driver (once per kernel-source hash) and return its directory.
fn build() -> PathBuf {
    let kernels = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let driver_src = kernels.join("sim/libcuda_sim.cpp");
    let h = sources_hash();
    let dir = FsPath::new(env!("OUT_DIR")).join(format!("sim-driver-{h:016x}"));
    let so = dir.join("libcuda.so.1");
    if !so.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("tmp_{}.so", std::process::id()));
        // (the unit tests' objects with the stand-in driver's own: only it is compiled here)
        let build = CxxBuild {
            flags: &[],
            extra_sources: &[driver_src],
            link: &["-Wl,-soname,libcuda.so.1"],
            executable: false,
        };
        if let Err(e) = build_cxx(&tmp, &build) {
            panic!("building the simulated driver failed:\n{e}");
        }
        std::fs::rename(&tmp, &so).unwrap();
    }
    // cudarc opens `libcuda.so` first: a link to the same file, so a second `dlopen` by either
    // name (the census below) reaches the same loaded library.
    let link = dir.join("libcuda.so");
    if !link.exists() {
        let _ = std::os::unix::fs::symlink("libcuda.so.1", &link);
    }
    dir
}

#[test]
fn layer_runs_on_the_simulated_driver() {
    if std::env::var(CHILD_ENV).is_ok() {
        return child();
    }
    let dir = build();
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(v) if !v.is_empty() => format!("{}:{v}", dir.display()),
        _ => dir.display().to_string(),
    };
    // With memory pools (stream-ordered allocation, as on current GPUs and drivers) and
    // without (cuMemAlloc / cuMemFree, as cudarc falls back to).
    for pools in ["1", "0"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("LD_LIBRARY_PATH", &ld)
            .env(CHILD_ENV, "1")
            .env("INT8RT_SIMDRV_POOLS", pools)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("simulated-driver child ok"),
            "child (pools {pools}) failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{stdout}");
    }
}

/// The library's call counts (`int8rt_simdrv_counts`), by entry point.
struct Census {
    lib: libloading::Library,
}

impl Census {
    fn open() -> Census {
        // SAFETY: `libcuda.so` is the simulated driver this process already loaded (the parent
        // put its directory first on LD_LIBRARY_PATH and the device opened); loading it again
        // runs no initializer.
        let lib = unsafe { libloading::Library::new("libcuda.so") }.unwrap();
        Census { lib }
    }
    fn reset(&self) {
        // SAFETY: `int8rt_simdrv_reset_counts` takes nothing and returns nothing.
        unsafe {
            let f = self
                .lib
                .get::<unsafe extern "C" fn()>(b"int8rt_simdrv_reset_counts")
                .expect("not the simulated driver");
            f()
        }
    }
    fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        type F = unsafe extern "C" fn(*mut std::ffi::c_char, usize) -> usize;
        let mut buf = vec![0 as std::ffi::c_char; 1 << 14];
        // SAFETY: the function writes at most `len` bytes, NUL-terminated, into `buf`.
        let text = unsafe {
            let f = self.lib.get::<F>(b"int8rt_simdrv_counts").unwrap();
            f(buf.as_mut_ptr(), buf.len());
            std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }
    /// Calls per forward, by entry point, over `calls` forwards run by `f` (each count a multiple
    /// of `calls`: every forward asks the same).
    fn per_call(&self, calls: u64, mut f: impl FnMut()) -> std::collections::BTreeMap<String, u64> {
        self.reset();
        for _ in 0..calls {
            f();
        }
        let c = self.counts();
        for (k, v) in &c {
            assert_eq!(v % calls, 0, "{k}: {v} calls over {calls} forwards");
        }
        c.into_iter().map(|(k, v)| (k, v / calls)).collect()
    }
}

fn sum(c: &std::collections::BTreeMap<String, u64>, names: &[&str]) -> u64 {
    names.iter().map(|n| c.get(*n).copied().unwrap_or(0)).sum()
}

const ALLOCS: &[&str] = &["cuMemAllocAsync", "cuMemAlloc_v2"];
const FREES: &[&str] = &["cuMemFreeAsync", "cuMemFree_v2"];
const LAUNCHES: &[&str] = &["cuLaunchKernel", "cuLaunchKernelEx"];
const READS: &[&str] = &["cuMemcpyDtoHAsync_v2", "cuMemcpyDtoH_v2"];
const WRITES: &[&str] = &["cuMemcpyHtoDAsync_v2", "cuMemcpyHtoD_v2"];
const SYNCS: &[&str] = &[
    "cuStreamSynchronize",
    "cuCtxSynchronize",
    "cuEventSynchronize",
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn child() {
    let dev = CudaDevice::new(0).expect("the simulated driver opens as device 0");
    assert!(dev.name().contains("simulated"), "{}", dev.name());
    assert_eq!(dev.compute_capability(), (9, 0));
    let census = Census::open();
    // Per-stream caches are keyed by the stream: every `Arc` of the null stream alike, the
    // per-thread default stream apart on each thread (it is another stream there).
    let key = |s: &Arc<CudaStream>| dev.exec(s).unwrap().stream_key();
    assert_eq!(key(&dev.default_stream()), key(&dev.default_stream()));
    let ctx = dev.context().clone();
    let here = key(&ctx.per_thread_stream());
    assert_eq!(here, key(&ctx.per_thread_stream()));
    let there = std::thread::scope(|sc| sc.spawn(|| key(&ctx.per_thread_stream())).join());
    assert_ne!(here, there.unwrap());
    assert_ne!(here, key(&dev.default_stream()));
    let stream: Arc<CudaStream> = dev.new_stream().unwrap();
    let (m, k, n) = (3usize, 200usize, 72usize);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
        .collect();
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.21)
        .collect();
    let xd = stream.clone_htod(&x).unwrap();
    for act in [
        ActivationQuant::default(),
        ActivationQuant::Dynamic {
            scheme: Scheme::Asymmetric,
            granularity: Granularity::PerTensor,
        },
    ] {
        let cfg = LinearConfig {
            activations: act,
            ..LinearConfig::default()
        };
        let layer = QuantLinear::from_f32("fc", &w, n, k, None, cfg).unwrap();
        let mut want = vec![0f32; m * n];
        layer
            .forward(
                &Context::new().with_path(Path::Reference),
                &x,
                m,
                &mut OutBuf::F32(&mut want),
            )
            .unwrap();
        let g: CudaQuantLinear = layer.to_cuda(&dev).unwrap();
        // Host slices, device buffers waited, device buffers deferred: the reference's bits.
        let mut y = vec![f32::NAN; m * n];
        g.forward(&x, m, &mut OutBuf::F32(&mut y)).unwrap();
        assert_eq!(bits(&y), bits(&want), "{act:?}: forward");
        let mut yd = stream.alloc_zeros::<f32>(m * n).unwrap();
        g.forward_device(&stream, &xd, m, CudaOut::F32(&mut yd))
            .unwrap();
        assert_eq!(
            bits(&stream.clone_dtoh(&yd).unwrap()),
            bits(&want),
            "{act:?}: forward_device"
        );
        let mut yd2 = stream.alloc_zeros::<f32>(m * n).unwrap();
        g.forward_device_async(&stream, &xd, m, CudaOut::F32(&mut yd2))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            bits(&stream.clone_dtoh(&yd2).unwrap()),
            bits(&want),
            "{act:?}: forward_device_async"
        );

        // The steady state: what one forward asks of the driver.
        let dev_calls = census.per_call(4, || {
            g.forward_device(&stream, &xd, m, CudaOut::F32(&mut yd))
                .unwrap();
        });
        let host_calls = census.per_call(4, || {
            g.forward(&x, m, &mut OutBuf::F32(&mut y)).unwrap();
        });
        println!("{act:?}: forward_device per call {dev_calls:?}");
        println!("{act:?}: forward (host slices) per call {host_calls:?}");
        let per_row = act == ActivationQuant::default();
        for (what, c) in [("forward_device", &dev_calls), ("forward", &host_calls)] {
            assert_eq!(sum(c, ALLOCS), 0, "{act:?} {what}: allocations");
            assert_eq!(sum(c, FREES), 0, "{act:?} {what}: frees");
            // Per-row dynamic activations: quantize, then the GEMM (the clear report word is a
            // slot of the stream's ring); per-tensor first sets the range words (ACT_INIT) and
            // reduces the range before it quantizes.
            assert_eq!(
                sum(c, LAUNCHES),
                if per_row { 2 } else { 4 },
                "{act:?} {what}: launches"
            );
            // No event is created either (cudarc makes two per allocation with event tracking
            // on): a missed per-stream cache shows here too.
            assert_eq!(
                sum(c, &["cuEventCreate"]),
                0,
                "{act:?} {what}: events created"
            );
        }
        // Waits: for the report word; host slices also for y (each read waits for the stream).
        assert_eq!(
            sum(&dev_calls, SYNCS),
            1,
            "{act:?}: forward_device synchronizations"
        );
        assert_eq!(
            sum(&host_calls, SYNCS),
            2,
            "{act:?}: forward synchronizations"
        );
        // cudarc's event tracking (on by default) only for the caller's buffers: forward_device
        // lends x (a wait for its last write, a read recorded) and y (waits for its last read
        // and write, a write recorded); the layer's own buffers carry no events, and a
        // host-slice forward has no caller buffer on the device at all.
        assert_eq!(
            sum(&dev_calls, &["cuEventRecord"]),
            2,
            "{act:?}: event records"
        );
        assert_eq!(
            sum(&dev_calls, &["cuStreamWaitEvent"]),
            3,
            "{act:?}: event waits"
        );
        assert_eq!(
            sum(&host_calls, &["cuEventRecord", "cuStreamWaitEvent"]),
            0,
            "{act:?}: forward's event calls"
        );
        // The report word read back; host slices also download y.
        assert_eq!(sum(&dev_calls, READS), 1, "{act:?}: forward_device reads");
        assert_eq!(sum(&dev_calls, WRITES), 0, "{act:?}: forward_device writes");
        assert_eq!(sum(&host_calls, READS), 2, "{act:?}: forward reads");
        assert_eq!(sum(&host_calls, WRITES), 1, "{act:?}: forward writes");
        assert_eq!(bits(&y), bits(&want), "{act:?}: steady-state forward");

        // A decode step: a chain of forwards enqueued (`forward_device_async`), then every
        // report read. Each forward asks for its launches alone; reading the first report
        // copies the stream's report ring back once and waits once, which settles the whole
        // chain (with a status word per forward, before: a copy and a wait per forward).
        let chain = 8;
        let chain_calls = census.per_call(1, || {
            let pending: Vec<_> = (0..chain)
                .map(|_| {
                    g.forward_device_async(&stream, &xd, m, CudaOut::F32(&mut yd2))
                        .unwrap()
                })
                .collect();
            for p in pending {
                p.wait().unwrap();
            }
        });
        println!("{act:?}: a chain of {chain} deferred forwards {chain_calls:?}");
        assert_eq!(
            sum(&chain_calls, LAUNCHES),
            chain * if per_row { 2 } else { 4 },
            "{act:?}: chain launches"
        );
        assert_eq!(sum(&chain_calls, READS), 1, "{act:?}: chain reads");
        assert_eq!(
            sum(&chain_calls, SYNCS),
            1,
            "{act:?}: chain synchronizations"
        );
        assert_eq!(sum(&chain_calls, WRITES), 0, "{act:?}: chain writes");
        assert_eq!(sum(&chain_calls, ALLOCS), 0, "{act:?}: chain allocations");
        assert_eq!(
            bits(&stream.clone_dtoh(&yd2).unwrap()),
            bits(&want),
            "{act:?}: chain"
        );
    }
    // A layer's whole life (upload, a forward, drop) allocates and frees the kind of memory
    // the device offers.
    census.reset();
    {
        let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap();
        let g = layer.to_cuda(&dev).unwrap();
        let mut y = vec![0f32; m * n];
        g.forward(&x, m, &mut OutBuf::F32(&mut y)).unwrap();
    }
    let all = census.counts();
    let pools = std::env::var("INT8RT_SIMDRV_POOLS").as_deref() != Ok("0");
    let (used, unused) = if pools {
        (
            ["cuMemAllocAsync", "cuMemFreeAsync"],
            ["cuMemAlloc_v2", "cuMemFree_v2"],
        )
    } else {
        (
            ["cuMemAlloc_v2", "cuMemFree_v2"],
            ["cuMemAllocAsync", "cuMemFreeAsync"],
        )
    };
    assert!(
        sum(&all, &used[..1]) > 0 && sum(&all, &used[1..]) > 0,
        "{all:?}"
    );
    assert_eq!(sum(&all, &unused), 0, "{all:?}");
    gemm_calls_are_one_launch(&dev, &census, &stream);
    println!("simulated-driver child ok");
}

/// A steady-state `CudaWeights::gemm` (the bench's and a serving loop's call) asks the driver
/// for its one launch and nothing else — no allocation (the split-K scratch is cached), no
/// synchronization, no copy, no event created — and, with cudarc's event tracking off (as the
/// bench runs), no event recorded or waited on either: whatever the host spends between CUDA
/// events around a call is this crate's own code and that launch. The GEMV (`Auto` at 3 rows),
/// the GEMV launched overlapped (`cuLaunchKernelEx`), and a tile forced at split-K 3; their i32
/// outputs alike.
fn gemm_calls_are_one_launch(dev: &CudaDevice, census: &Census, stream: &Arc<CudaStream>) {
    let (k, n) = (200usize, 72usize);
    let lda = k.div_ceil(16) * 16;
    let wq: Vec<i8> = (0..n * k).map(|i| (i * 29 % 255) as i8).collect();
    let mut w = CudaWeights::new(dev, &wq, n, k, &[0.01], Bias::None).unwrap();
    let scale = stream.clone_htod(&[0.02f32]).unwrap();
    let sliced = GemmKernel::Mma(Some(MmaConfig {
        tile: MmaTile::M64N64K2,
        splits: 3,
    }));
    for tracking in [true, false] {
        if !tracking {
            // SAFETY: every buffer below lives on `stream` alone (the weights were uploaded
            // and synchronized before), so no cross-stream order depends on cudarc's events.
            unsafe { dev.context().disable_event_tracking() };
        }
        for (kernel, overlapped, m) in [
            (GemmKernel::Auto, false, 3usize),
            (GemmKernel::Auto, true, 3),
            (sliced, false, 70),
        ] {
            w.set_kernel(kernel).unwrap();
            w.set_overlapped_launch(overlapped);
            let xq: Vec<i8> = (0..m * lda).map(|i| (i * 7 % 251) as i8).collect();
            let x = stream.clone_htod(&xq).unwrap();
            let mut y = stream.alloc_zeros::<i32>(m * n).unwrap();
            let call = |w: &CudaWeights, y: &mut crate::cuda::cudarc::driver::CudaSlice<i32>| {
                let act = CudaActScales::PerTensor {
                    scale: &scale,
                    zero_point: None,
                };
                let x = CudaActivations::S8 { x: &x, lda };
                w.gemm(stream, m, x, act, CudaOut::I32(y)).unwrap();
            };
            call(&w, &mut y); // (warm: the split-K scratch is cached from here)
            let c = census.per_call(4, || call(&w, &mut y));
            let what = format!("{kernel} overlapped {overlapped}, tracking {tracking}");
            println!("gemm {what}: per call {c:?}");
            let launches = if overlapped {
                ["cuLaunchKernelEx"]
            } else {
                ["cuLaunchKernel"]
            };
            assert_eq!(sum(&c, &launches), 1, "{what}");
            assert_eq!(sum(&c, LAUNCHES), 1, "{what}");
            for (label, names) in [
                ("allocations", ALLOCS),
                ("frees", FREES),
                ("synchronizations", SYNCS),
                ("reads", READS),
                ("writes", WRITES),
                ("event creations", &["cuEventCreate"][..]),
            ] {
                assert_eq!(sum(&c, names), 0, "{what}: {label}");
            }
            if !tracking {
                assert_eq!(
                    sum(&c, &["cuEventRecord", "cuStreamWaitEvent"]),
                    0,
                    "{what}: event calls"
                );
            }
            // Against the GEMV's output, which the layer test above checks against the
            // reference through the same launch path.
            let got = stream.clone_dtoh(&y).unwrap();
            w.set_kernel(GemmKernel::MmaGemv).unwrap();
            w.set_overlapped_launch(false);
            let mut want = stream.alloc_zeros::<i32>(m * n).unwrap();
            call(&w, &mut want);
            assert_eq!(got, stream.clone_dtoh(&want).unwrap(), "{what}: output");
        }
    }
}
