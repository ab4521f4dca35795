//! examples/end_to_end — the whole int8rt workflow on real data, in one command:
//! `cargo run --release --example end_to_end`.
//!
//! 1. Train an f32 MLP (`int8rt::qat` toolkit) on scikit-learn's digits (committed under `data/`)
//!    and, when `scripts/fetch-fashion-mnist.sh` has fetched it, on Fashion-MNIST.
//! 2. Post-training int8: a calibration run (`nn::CalibrationRun`, one observer per layer input)
//!    over part of the training set, then `nn::QuantLinear` layers with static input scales
//!    from each calibration method (max, percentile, MSE, entropy), and dynamic per-row scales
//!    for comparison, all run on the int8 engine.
//! 3. Post-training 4-bit (codes in int8 containers): 4-bit per-channel weights and 4-bit inputs
//!    from the max and percentile calibrations, on the engine; and the same at 3 bits.
//! 4. Quantization-aware training at 4 (and 3) bits from there (clipped STE, LSQ-learnt
//!    ranges), then conversion to the engine, checking the engine's logits equal the
//!    fake-quantized deployable forward bit for bit.
//! 5. One table of accuracies, and the engine's latency against the f32 model's (on the `gemm`
//!    crate's f32 GEMM) on this device, with the path that ran.
//!
//! No network is needed; without Fashion-MNIST it runs on digits alone and says so.

mod data;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use data::Dataset;
use int8rt::calib::{AmaxMethod, Method, ObserverConfig};
use int8rt::gemm::{Context, Path};
use int8rt::nn::{ActivationQuant, CalibrationRun, LinearConfig, QuantLinear};
use int8rt::qat::train::{accuracy, relu, Adam, Rng};
use int8rt::qat::{FakeQuantConfig, Mlp, QuantMlp};
use int8rt::quant::{Granularity, Scheme};
use int8rt::Device;

/// How one data set is trained.
struct Plan {
    /// Layer widths, input first.
    sizes: Vec<usize>,
    /// f32 training epochs.
    epochs: usize,
    /// QAT epochs.
    qat_epochs: usize,
    /// Training rows used (a prefix of the shuffled training set).
    train_rows: usize,
    /// Rows of the training set the calibration observes.
    calib_rows: usize,
    batch: usize,
    lr: f32,
    qat_lr: f32,
}

/// One line of the accuracy table.
struct Row {
    data: &'static str,
    model: String,
    weights: String,
    inputs: String,
    accuracy: f32,
    f32_accuracy: f32,
}

/// One line of the latency table.
struct Latency {
    data: &'static str,
    batch: usize,
    f32_time: Duration,
    int8_time: Duration,
    path: Path,
    /// The int8 engine on the GPU, host memory in and out (copies included), and its path.
    gpu: Option<(Duration, Path)>,
}

fn main() -> Result<()> {
    let start = Instant::now();
    let ctx = Context::new();
    println!("int8rt end-to-end: f32 training → calibration → post-training int8 / 4-bit / 3-bit → QAT → int8 engine\n");
    let device = Device::auto();
    println!("device: {device} (Device::auto)");
    println!("cpu: {}", describe_cpu(&ctx));

    let mut sets: Vec<(Dataset, Dataset, Plan)> = Vec::new();
    let digits = data::load_digits().context("loading data/digits.csv.gz")?;
    let mut idx: Vec<usize> = (0..digits.rows()).collect();
    Rng::new(1).shuffle(&mut idx);
    // scikit-learn's usual 75 / 25 split, fixed by the seed.
    let (train, test) = (digits.select(&idx[..1347]), digits.select(&idx[1347..]));
    println!(
        "data: digits — 1797 images of 8×8 (scikit-learn's copy of the UCI test set; BSD-3 / CC BY 4.0): {} train, {} test",
        train.rows(),
        test.rows()
    );
    sets.push((
        train,
        test,
        Plan {
            sizes: vec![64, 64, 10],
            epochs: 40,
            qat_epochs: 10,
            train_rows: 1347,
            calib_rows: 512,
            batch: 32,
            lr: 1e-3,
            qat_lr: 5e-5,
        },
    ));
    match data::load_fashion_mnist()? {
        Some((train, test)) => {
            let plan = Plan {
                sizes: vec![784, 128, 10],
                epochs: 9,
                qat_epochs: 3,
                train_rows: 20_000,
                calib_rows: 1024,
                batch: 64,
                lr: 1e-3,
                qat_lr: 5e-5,
            };
            let mut idx: Vec<usize> = (0..train.rows()).collect();
            Rng::new(2).shuffle(&mut idx);
            let train = train.select(&idx[..plan.train_rows.min(idx.len())]);
            println!(
                "data: Fashion-MNIST — 28×28 (Zalando, MIT; from data/fetched/): {} of 60000 train (time budget), {} test",
                train.rows(),
                test.rows()
            );
            sets.push((train, test, plan));
        }
        None => println!(
            "data: Fashion-MNIST not found in data/fetched/fashion-mnist/ — running on digits only \
             (scripts/fetch-fashion-mnist.sh fetches it from Debian's dataset-fashion-mnist)"
        ),
    }

    let (mut rows, mut lat) = (Vec::new(), Vec::new());
    for (train, test, plan) in &sets {
        run(&ctx, &device, train, test, plan, &mut rows, &mut lat)?;
    }

    print_tables(&rows, &lat);
    println!("\ntotal time {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The CPU model and the int8 CPU paths this machine can run.
fn describe_cpu(ctx: &Context) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let paths = int8rt::gemm::cpu::available_paths();
    format!(
        "{model}, {} threads; int8 CPU paths available: {paths:?}",
        ctx.threads()
    )
}

/// Train, quantize, evaluate and time one data set.
#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Context,
    device: &Device,
    train: &Dataset,
    test: &Dataset,
    plan: &Plan,
    rows: &mut Vec<Row>,
    lat: &mut Vec<Latency>,
) -> Result<()> {
    let name = train.name;
    let classes = train.classes;
    ensure!(plan.sizes[0] == train.features && plan.sizes[plan.sizes.len() - 1] == classes);
    let (xt, mt) = (&test.x, test.rows());

    // 1. f32 training.
    let t = Instant::now();
    let mut mlp = Mlp::new(&plan.sizes, 42)?;
    let mut opt = Adam::new(plan.lr);
    let mut rng = Rng::new(3);
    let mut loss = 0.0;
    for e in 0..plan.epochs {
        // Step decay: the last third of the epochs at a tenth of the rate, so the f32 model is
        // close to converged before quantization.
        if e == plan.epochs - plan.epochs / 3 {
            opt.lr = plan.lr / 10.0;
        }
        loss = mlp.train_epoch(&train.x, &train.labels, plan.batch, &mut opt, &mut rng)?;
    }
    let f32_acc = accuracy(&mlp.forward(xt, mt)?, &test.labels, classes);
    println!(
        "\n[{name}] f32 MLP {:?}: {} epochs of Adam in {:.2} s, final training loss {loss:.4}, test accuracy {:.2}%",
        plan.sizes,
        plan.epochs,
        t.elapsed().as_secs_f64(),
        100.0 * f32_acc
    );
    let mut push = |model: String, weights: String, inputs: String, accuracy: f32| {
        rows.push(Row {
            data: name,
            model,
            weights,
            inputs,
            accuracy,
            f32_accuracy: f32_acc,
        })
    };
    push("f32".into(), "f32".into(), "f32".into(), f32_acc);

    // Control for QAT's extra epochs: the f32 model trained for as many more epochs, at the
    // QAT learning rate, without fake quantization.
    let mut control = mlp.clone();
    let mut opt_c = Adam::new(plan.qat_lr);
    let mut rng_c = rng.clone();
    for _ in 0..plan.qat_epochs {
        control.train_epoch(&train.x, &train.labels, plan.batch, &mut opt_c, &mut rng_c)?;
    }
    push(
        format!("f32 + {} epochs (control for QAT)", plan.qat_epochs),
        "f32".into(),
        "f32".into(),
        accuracy(&control.forward(xt, mt)?, &test.labels, classes),
    );

    // 2. A calibration run: one observer per layer input (min/max, the histogram of |x|, ...),
    // fed the first calib_rows training images through the f32 model in batches of 256.
    let calib = train.head(plan.calib_rows);
    let mut run = CalibrationRun::new(ObserverConfig::default());
    for l in mlp.layers() {
        run.attach(l.name())?;
    }
    let last = mlp.layers().len() - 1;
    for start in (0..calib.rows()).step_by(256) {
        let b = (calib.rows() - start).min(256);
        let mut h = calib.x[start * calib.features..(start + b) * calib.features].to_vec();
        for (i, l) in mlp.layers().iter().enumerate() {
            run.observe(l.name(), &h, &[b, l.in_features()])?;
            if i < last {
                h = l.forward(&h, b)?;
                relu(&mut h);
            }
        }
    }
    let observer = |name: &str| run.observer(name).context("layer without an observer");
    let ranges = mlp
        .layers()
        .iter()
        .map(|l| observer(l.name())?.range().map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;

    // Post-training int8 with static input scales from each calibration method. The inputs are
    // ≥ 0 (pixels, then ReLU outputs), so the unsigned scheme: u8 over [0, amax], zero point 0.
    // (Cross-entropy calibration is for logits feeding a softmax, not for layer inputs.)
    let methods = [
        ("max", AmaxMethod::Max),
        ("percentile 99.99", AmaxMethod::Percentile(99.99)),
        ("MSE", AmaxMethod::Mse),
        ("entropy", AmaxMethod::Entropy),
    ];
    let mut int8 = None;
    for (label, method) in methods {
        let mut engine = int8_engine(&mlp, |_| ActivationQuant::default())?;
        let mut layers: Vec<&mut QuantLinear> = engine.layers.iter_mut().collect();
        let frozen = run.freeze(&mut layers, Method::Unsigned(method))?;
        let (logits, path) = engine.forward(ctx, xt, mt)?;
        let scales: Vec<String> = frozen
            .iter()
            .map(|f| format!("{} {:.4}", f.layer, f.params.scale()))
            .collect();
        println!(
            "[{name}] int8, {label} calibration: input scales {}; ran on path {path:?} (ctx.last_path() = {:?})",
            scales.join(", "),
            ctx.last_path()
        );
        push(
            format!("post-training int8, {label}"),
            "int8 per channel".into(),
            "u8 static (calibrated)".into(),
            accuracy(&logits, &test.labels, classes),
        );
        if int8.is_none() {
            int8 = Some(engine);
        }
    }
    let int8 = int8.context("no int8 engine was built")?;
    // On a GPU: the same layers resident on the device give the CPU engine's logits bit for bit.
    let gpu_int8 = GpuMlp::new(device, &int8)?;
    if let Some(g) = &gpu_int8 {
        let (cpu, _) = int8.forward(ctx, xt, mt)?;
        let (gl, path) = g.forward(xt, mt)?;
        ensure!(bits_equal(&cpu, &gl), "GPU and CPU int8 engines differ");
        println!(
            "[{name}] int8 engine on the GPU ({path:?}): logits == the CPU engine's, bit for bit"
        );
    }
    // Dynamic per-row int8 needs no calibration.
    let dynamic = int8_engine(&mlp, |_| ActivationQuant::Dynamic {
        scheme: Scheme::Symmetric,
        granularity: Granularity::PerRow,
    })?;
    let (logits, _) = dynamic.forward(ctx, xt, mt)?;
    push(
        "post-training int8, dynamic".into(),
        "int8 per channel".into(),
        "s8 per row (dynamic)".into(),
        accuracy(&logits, &test.labels, classes),
    );

    // 3 and 4, at 4 bits (the target) and at 3 bits (where post-training loses more).
    for bits in [4u32, 3] {
        // Post-training: per-channel weights (max |w| / qmax) and unsigned inputs over the
        // calibrated ranges, as fake quantizers, converted to the engine.
        let mut q = mlp.clone();
        q.enable_fake_quant(
            FakeQuantConfig::weights(bits),
            FakeQuantConfig::activations(bits, false),
            &ranges,
        )?;
        let (logits, _) = q.to_quant_mlp()?.forward(ctx, xt, mt)?;
        push(
            format!("post-training {bits}-bit, max"),
            format!("{bits}-bit per channel"),
            format!("{bits}-bit static (max)"),
            accuracy(&logits, &test.labels, classes),
        );
        // The same with the 99.99th percentile of |x| as each input's range (MSE and entropy
        // search 8-bit grids, so they do not apply to fewer bits as they are).
        let pct = mlp
            .layers()
            .iter()
            .map(|l| {
                Ok((
                    0.0,
                    observer(l.name())?.amax(AmaxMethod::Percentile(99.99), true)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut qp = mlp.clone();
        qp.enable_fake_quant(
            FakeQuantConfig::weights(bits),
            FakeQuantConfig::activations(bits, false),
            &pct,
        )?;
        let (logits, _) = qp.to_quant_mlp()?.forward(ctx, xt, mt)?;
        push(
            format!("post-training {bits}-bit, percentile 99.99"),
            format!("{bits}-bit per channel"),
            format!("{bits}-bit static (pct)"),
            accuracy(&logits, &test.labels, classes),
        );

        // QAT from the post-training point: weights, biases, scales and zero points learnt
        // together (clipped STE, LSQ / LSQ+).
        let t = Instant::now();
        let mut opt = Adam::new(plan.qat_lr);
        let mut rng_q = rng.clone();
        for _ in 0..plan.qat_epochs {
            loss = q.train_epoch(&train.x, &train.labels, plan.batch, &mut opt, &mut rng_q)?;
        }
        let engine = q.to_quant_mlp()?;
        let (logits, path) = engine.forward(ctx, xt, mt)?;
        let deploy = q.forward_deploy(xt, mt)?;
        let same = logits
            .iter()
            .zip(&deploy)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        ensure!(
            same == logits.len(),
            "the engine differs from the deployable forward in {} of {} logits",
            logits.len() - same,
            logits.len()
        );
        if let Some(g) = GpuMlp::new(device, &engine)? {
            let (gl, gpath) = g.forward(xt, mt)?;
            ensure!(
                bits_equal(&gl, &deploy),
                "the GPU engine differs from the deployable forward"
            );
            let fq_in = q.layers()[0]
                .input_quantizer()
                .context("no input quantizer")?;
            let (cpu_fq, gpu_fq) = fake_quant_cpu_gpu(device, fq_in, xt)?;
            ensure!(
                bits_equal(&cpu_fq, &gpu_fq),
                "the fake-quant kernel differs from the CPU"
            );
            println!(
                "[{name}] QAT {bits}-bit on the GPU ({gpath:?}): logits == deployable forward bit for bit; \
                 fake-quant kernel == CPU on all {} inputs of fc1",
                xt.len()
            );
        }
        let fq_float = accuracy(&q.forward(xt, mt)?, &test.labels, classes);
        let scales: Vec<String> = q
            .layers()
            .iter()
            .filter_map(|l| l.input_quantizer())
            .map(|xq| {
                let (s, zp) = xq.effective(0)?;
                Ok(format!("{s:.4} (zp {zp})"))
            })
            .collect::<int8rt::Result<_>>()?;
        println!(
            "[{name}] QAT {bits}-bit: {} epochs in {:.2} s, final training loss {loss:.4}; engine ({path:?}) logits == \
             deployable forward bit for bit on all {} values (fake-quant float forward: {:.2}%); learnt input scales {}",
            plan.qat_epochs,
            t.elapsed().as_secs_f64(),
            logits.len(),
            100.0 * fq_float,
            scales.join(", ")
        );
        push(
            format!("QAT {bits}-bit ({} epochs, LSQ ranges)", plan.qat_epochs),
            format!("{bits}-bit per channel"),
            format!("{bits}-bit static (learnt)"),
            accuracy(&logits, &test.labels, classes),
        );
    }

    // 5. Latency of the f32 model and of the int8 engine (post-training int8, static), the whole
    // test set as one batch and one image at a time.
    for batch in [mt, 1] {
        let x = &xt[..batch * test.features];
        // The baseline computes the same model (f32 sums in another order).
        let (a, b) = (
            mlp.forward(x, batch)?,
            f32_forward_gemm(&mlp, x, batch, ctx.threads()),
        );
        let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        ensure!(
            diff <= 1e-4 * scale,
            "gemm-crate f32 forward differs by {diff}"
        );
        let f32_time = median_time(|| {
            std::hint::black_box(f32_forward_gemm(&mlp, x, batch, ctx.threads()));
            Ok(())
        })?;
        let mut path = Path::Reference;
        let int8_time = median_time(|| {
            path = int8.forward(ctx, x, batch)?.1;
            Ok(())
        })?;
        let gpu = match &gpu_int8 {
            Some(g) => {
                let mut gpath = Path::Reference;
                let t = median_time(|| {
                    gpath = g.forward(x, batch)?.1;
                    Ok(())
                })?;
                Some((t, gpath))
            }
            None => None,
        };
        lat.push(Latency {
            data: name,
            batch,
            f32_time,
            int8_time,
            path,
            gpu,
        });
    }
    Ok(())
}

/// The f32 model's layers as `QuantLinear` layers with int8 per-channel weights and the input
/// quantization `act(i)` for layer `i`.
fn int8_engine(mlp: &Mlp, act: impl Fn(usize) -> ActivationQuant) -> Result<QuantMlp> {
    let layers = mlp
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let cfg = LinearConfig {
                weights: Default::default(),
                activations: act(i),
            };
            QuantLinear::from_f32(
                l.name(),
                &l.weight.value,
                l.out_features(),
                l.in_features(),
                Some(&l.bias.value),
                cfg,
            )
        })
        .collect::<int8rt::Result<Vec<_>>>()?;
    Ok(QuantMlp { layers })
}

/// Median wall time of `f` over enough runs to fill about 0.2 s (at least 5, at most 1000),
/// after one warm-up run.
fn median_time(mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < 5 || (budget.elapsed() < Duration::from_millis(200) && times.len() < 1000) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn print_tables(rows: &[Row], lat: &[Latency]) {
    println!("\nTest accuracy (every quantized row ran on the int8 engine; 4- and 3-bit codes are held in int8 containers):\n");
    println!("| data set      | model                                  | weights           | inputs                 | accuracy | vs f32   |");
    println!("|---------------|----------------------------------------|-------------------|------------------------|----------|----------|");
    for r in rows {
        let delta = if r.weights == "f32" {
            String::new()
        } else {
            format!("{:+.2}", 100.0 * (r.accuracy - r.f32_accuracy))
        };
        println!(
            "| {:<13} | {:<38} | {:<17} | {:<22} | {:>7.2}% | {:>8} |",
            r.data,
            r.model,
            r.weights,
            r.inputs,
            100.0 * r.accuracy,
            delta
        );
    }
    println!(
        "\nEntropy (KL) calibration assumes a smooth distribution: on inputs with few distinct values (digits'\n\
         pixels take 17) it can clip most of the range; the input scales each method chose are printed above."
    );
    println!("\nLatency of one forward (median; f32 = the same MLP on the `gemm` crate's f32 GEMM, bias and ReLU after;");
    println!("int8 = post-training int8 QuantLinear layers with static input scales):\n");
    println!("| data set      | batch | f32        | int8 engine | int8 path  | f32 / int8 | int8 GPU (copies incl.)  |");
    println!("|---------------|-------|------------|-------------|------------|------------|--------------------------|");
    for l in lat {
        let gpu = match l.gpu {
            Some((t, p)) => format!("{} ({p:?})", human(t)),
            None => "— (no GPU)".to_string(),
        };
        println!(
            "| {:<13} | {:>5} | {:>10} | {:>11} | {:<10} | {:>9.2}× | {:<24} |",
            l.data,
            l.batch,
            human(l.f32_time),
            human(l.int8_time),
            format!("{:?}", l.path),
            l.f32_time.as_secs_f64() / l.int8_time.as_secs_f64(),
            gpu
        );
    }
}

/// `12.3 µs` below a millisecond, `12.3 ms` above.
fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

/// The f32 model's forward with a tuned f32 GEMM (the `gemm` crate, the crate's f32 baseline in
/// its benches) for each layer, bias and ReLU added after: the fair f32 side of the latency table.
fn f32_forward_gemm(mlp: &Mlp, x: &[f32], m: usize, threads: usize) -> Vec<f32> {
    let par = if threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    let last = mlp.layers().len() - 1;
    let mut h = x.to_vec();
    for (i, l) in mlp.layers().iter().enumerate() {
        let (n, k) = (l.out_features(), l.in_features());
        assert_eq!(h.len(), m * k);
        let mut y = vec![0f32; m * n];
        // SAFETY: y is [m, n] row-major (column stride 1, row stride n); h is [m, k] row-major
        // (asserted above); the right operand is Wᵀ read from W [n, k] (row stride 1, column
        // stride k), which QatLinear guarantees holds n·k values. Nothing else aliases y.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                false,
                h.as_ptr(),
                1,
                k as isize,
                l.weight.value.as_ptr(),
                k as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        }
        for row in y.chunks_exact_mut(n) {
            for (v, b) in row.iter_mut().zip(&l.bias.value) {
                *v += b;
            }
        }
        if i < last {
            relu(&mut y);
        }
        h = y;
    }
    h
}

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The int8 engine's layers resident on the GPU (the `cuda` feature and a GPU), ReLU between
/// them on the host.
#[cfg(feature = "cuda")]
struct GpuMlp(Vec<int8rt::cuda::CudaQuantLinear>);

#[cfg(feature = "cuda")]
impl GpuMlp {
    /// `None` on the CPU.
    fn new(device: &Device, engine: &QuantMlp) -> Result<Option<Self>> {
        let Device::Cuda(dev) = device else {
            return Ok(None);
        };
        let layers = engine
            .layers
            .iter()
            .map(|l| l.to_cuda(dev))
            .collect::<int8rt::Result<Vec<_>>>()?;
        Ok(Some(GpuMlp(layers)))
    }

    fn forward(&self, x: &[f32], m: usize) -> Result<(Vec<f32>, Path)> {
        let mut h = x.to_vec();
        let mut path = Path::Reference;
        let last = self.0.len() - 1;
        for (i, l) in self.0.iter().enumerate() {
            let mut y = vec![0f32; m * l.out_features()];
            path = l.forward(&h, m, &mut int8rt::gemm::OutBuf::F32(&mut y))?;
            if i < last {
                relu(&mut y);
            }
            h = y;
        }
        Ok((h, path))
    }
}

/// Without the `cuda` feature there is never a GPU engine.
#[cfg(not(feature = "cuda"))]
struct GpuMlp;

#[cfg(not(feature = "cuda"))]
impl GpuMlp {
    fn new(_device: &Device, _engine: &QuantMlp) -> Result<Option<Self>> {
        Ok(None)
    }
    fn forward(&self, _x: &[f32], _m: usize) -> Result<(Vec<f32>, Path)> {
        anyhow::bail!("this build has no CUDA backend")
    }
}

/// A fake quantizer's forward on the CPU and, on a GPU, with `kernels/fake_quant.cu`.
fn fake_quant_cpu_gpu(
    device: &Device,
    fq: &int8rt::qat::FakeQuantizer,
    x: &[f32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut cpu = vec![0f32; x.len()];
    fq.forward("x", x, &mut cpu)?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        return Ok((cpu, fq.forward_cuda_host(dev, "x", x)?));
    }
    let _ = device;
    anyhow::bail!("no GPU")
}
