//! bin/int8rt/calibrate.rs — `int8rt calibrate FILE.npy`: reads a float32 `.npy` array, feeds it
//! to the library's observers (whole, or slice by slice along `--batch-axis`), and prints every
//! range method's result as one JSON object (`--json`) or a readable table; `--plot` draws the
//! histogram with each method's range marked.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args as ClapArgs;
use int8rt::calib::{
    entropy_amax, mse_amax, percentile_amax, CrossEntropyConfig, CrossEntropyObserver,
    EntropyOptions, Histogram, HistogramConfig, MaxObserver, MinMaxObserver, MseOptions, NonFinite,
};
use int8rt::npy;
use int8rt::quant::{Convention, QuantParams, TorchDtype};

/// Options of `int8rt calibrate`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A float32 `.npy` array (C order, little-endian).
    pub file: PathBuf,
    /// Also report per-channel `max |x|` along this axis.
    #[arg(long)]
    pub axis: Option<usize>,
    /// Feed each slice along this axis as its own batch, in order (exercises histogram growth).
    #[arg(long)]
    pub batch_axis: Option<usize>,
    /// Also run the cross-entropy search, with the softmax over this (class) axis.
    #[arg(long)]
    pub softmax_axis: Option<usize>,
    /// Histogram bins for the first batch.
    #[arg(long, default_value_t = 2048)]
    pub bins: usize,
    /// Write an SVG of the histogram (log counts) with each method's range marked.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Drop NaN and ±inf (and count them) instead of refusing the file.
    #[arg(long)]
    pub skip_nonfinite: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Everything the command computes.
struct Report {
    file: String,
    shape: Vec<usize>,
    count: usize,
    nonfinite: u64,
    min: f32,
    max: f32,
    bins: usize,
    width: f32,
    amax: Vec<(&'static str, f32)>,
    amax_unsigned: Option<Vec<(&'static str, f32)>>,
    // (each an error of its own where the range has no such parameters, e.g. a span past
    // f32::MAX: the rest of the report stands)
    asymmetric: Params,
    torch_affine: Params,
    torch_symmetric: Params,
    per_channel: Option<(usize, Vec<f32>)>,
}

/// Parameters for the range, or why the range has none.
type Params = std::result::Result<QuantParams, String>;

/// Split a C-order array along `axis`: the slices in order, and the shape of each.
fn slices(x: &[f32], shape: &[usize], axis: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
    let outer: usize = shape[..axis].iter().product();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut sub = shape.to_vec();
    sub.remove(axis);
    let out = (0..n)
        .map(|b| {
            let mut s = Vec::with_capacity(outer * inner);
            for o in 0..outer {
                let start = (o * n + b) * inner;
                s.extend_from_slice(&x[start..start + inner]);
            }
            s
        })
        .collect();
    (out, sub)
}

/// An axis of the full array as an axis of one batch slice.
fn slice_axis(flag: &str, axis: usize, ndim: usize, batch_axis: Option<usize>) -> Result<usize> {
    if axis >= ndim {
        bail!("{flag} {axis} is out of range for a {ndim}-d array");
    }
    Ok(match batch_axis {
        Some(b) if b == axis => bail!("{flag} must differ from --batch-axis"),
        Some(b) if axis > b => axis - 1,
        _ => axis,
    })
}

fn compute(args: &Args) -> Result<(Report, Histogram)> {
    let name = args.file.display().to_string();
    let arr = npy::read(&args.file)?;
    let file_shape = arr.shape.clone();
    let x = arr.into_f32(&name)?;
    // (a 0-d array is observed as one value)
    let shape = if file_shape.is_empty() {
        vec![1]
    } else {
        file_shape.clone()
    };
    let ndim = shape.len();
    let (batches, bshape) = match args.batch_axis {
        Some(b) => {
            if b >= ndim {
                bail!("--batch-axis {b} is out of range for a {ndim}-d array");
            }
            slices(&x, &shape, b)
        }
        None => (vec![x.clone()], shape.clone()),
    };
    let axis = args
        .axis
        .map(|a| slice_axis("--axis", a, ndim, args.batch_axis))
        .transpose()?;
    let softmax = args
        .softmax_axis
        .map(|a| slice_axis("--softmax-axis", a, ndim, args.batch_axis))
        .transpose()?;
    let policy = if args.skip_nonfinite {
        NonFinite::Skip
    } else {
        NonFinite::Error
    };

    let hcfg = HistogramConfig {
        bins: args.bins,
        nonfinite: policy,
        ..HistogramConfig::default()
    };
    let mut hist = Histogram::new(&name, hcfg)?;
    let mut minmax = MinMaxObserver::new(&name, policy);
    let mut per_channel = axis.map(|a| MaxObserver::per_channel(&name, a, policy));
    let mut ce = match softmax {
        Some(_) => Some(CrossEntropyObserver::new(
            &name,
            CrossEntropyConfig {
                nonfinite: policy,
                ..CrossEntropyConfig::default()
            },
        )?),
        None => None,
    };
    for b in &batches {
        hist.observe(b)?;
        minmax.observe(b)?;
        if let Some(pc) = &mut per_channel {
            pc.observe_shaped(b, &bshape)?;
        }
        if let (Some(ce), Some(a)) = (&mut ce, softmax) {
            ce.observe(b, &bshape, a)?;
        }
    }
    let (min, max) = minmax
        .range()
        .with_context(|| format!("`{name}` holds no finite value"))?;
    let (c, e) = (hist.counts(), hist.edges());
    let mse = MseOptions::default();
    let ent = EntropyOptions::default();
    let mut amax = vec![
        ("max", min.abs().max(max.abs())),
        ("percentile_99.9", percentile_amax(c, e, 99.9)?),
        ("percentile_99.99", percentile_amax(c, e, 99.99)?),
        ("percentile_99.999", percentile_amax(c, e, 99.999)?),
        ("mse", mse_amax(c, e, false, &mse)?),
        ("entropy", entropy_amax(c, e, false, &ent)?),
    ];
    if let Some(ce) = &ce {
        amax.push(("cross_entropy", ce.amax()?));
    }
    let amax_unsigned = if min >= 0.0 {
        Some(vec![
            ("percentile_99.9", percentile_amax(c, e, 99.9)?),
            ("percentile_99.99", percentile_amax(c, e, 99.99)?),
            ("mse", mse_amax(c, e, true, &mse)?),
            ("entropy", entropy_amax(c, e, true, &ent)?),
        ])
    } else {
        None
    };
    let torch = |dtype, symmetric| {
        QuantParams::from_range(
            Convention::TorchAo {
                dtype,
                symmetric,
                reduce_range: false,
            },
            min,
            max,
        )
        .map_err(|e| e.to_string())
    };
    let per_channel = match (&per_channel, args.axis) {
        (Some(pc), Some(a)) => Some((a, pc.amax_per_channel()?.to_vec())),
        _ => None,
    };
    let report = Report {
        file: name,
        count: x.len(),
        shape: file_shape,
        nonfinite: hist.nonfinite_skipped(),
        min,
        max,
        bins: c.len(),
        width: hist.width(),
        amax,
        amax_unsigned,
        asymmetric: QuantParams::asymmetric(min, max).map_err(|e| e.to_string()),
        torch_affine: torch(TorchDtype::QUInt8, false),
        torch_symmetric: torch(TorchDtype::QInt8, true),
        per_channel,
    };
    Ok((report, hist))
}

/// Run the subcommand.
pub fn run(args: Args) -> Result<()> {
    let (r, hist) = compute(&args)?;
    if let Some(path) = &args.plot {
        std::fs::write(path, plot(&r, &hist))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", json(&r));
    } else {
        print!("{}", table(&r));
    }
    Ok(())
}

/// A JSON number for an f32: the shortest decimal that reads back as the same f32, with an
/// exponent outside [1e-4, 1e9) (`3e38`, not 39 digits).
fn num(v: f32) -> String {
    if v.is_finite() {
        short(v)
    } else {
        "null".into()
    }
}

/// The shortest decimal of `v` that reads back as `v`: positional for magnitudes in [1e-4, 1e9)
/// and zero, with an exponent otherwise.
fn short(v: f32) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e9).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Parameters as a JSON object, or `{"error": …}` when the range has none.
fn qp(p: &Params) -> String {
    match p {
        Ok(p) => format!(
            "{{\"scale\": {}, \"zero_point\": {}}}",
            num(p.scale()),
            p.zero_point()
        ),
        Err(e) => format!("{{\"error\": {}}}", serde_json::Value::from(e.as_str())),
    }
}

fn obj(fields: &[(&str, f32)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {}", num(*v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn json(r: &Report) -> String {
    let mut s = String::from("{");
    let shape: Vec<String> = r.shape.iter().map(|d| d.to_string()).collect();
    let _ = write!(
        s,
        "\"shape\": [{}], \"count\": {}, \"nonfinite\": {}, \"min\": {}, \"max\": {}",
        shape.join(", "),
        r.count,
        r.nonfinite,
        num(r.min),
        num(r.max)
    );
    let _ = write!(s, ", \"amax\": {}", obj(&r.amax));
    if let Some(u) = &r.amax_unsigned {
        let _ = write!(s, ", \"amax_unsigned\": {}", obj(u));
    }
    let _ = write!(s, ", \"asymmetric\": {}", qp(&r.asymmetric));
    let _ = write!(
        s,
        ", \"torch_ao\": {{\"affine_quint8\": {}, \"symmetric_qint8\": {}}}",
        qp(&r.torch_affine),
        qp(&r.torch_symmetric)
    );
    if let Some((axis, a)) = &r.per_channel {
        let vals: Vec<String> = a.iter().map(|v| num(*v)).collect();
        let _ = write!(
            s,
            ", \"per_channel\": {{\"axis\": {axis}, \"amax\": [{}]}}",
            vals.join(", ")
        );
    }
    s.push('}');
    s
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "file        {}", r.file);
    let _ = writeln!(s, "shape       {:?}", r.shape);
    let _ = writeln!(
        s,
        "count       {} ({} non-finite skipped)",
        r.count, r.nonfinite
    );
    let _ = writeln!(s, "min, max    {}, {}", short(r.min), short(r.max));
    let _ = writeln!(s, "histogram   {} bins of width {}", r.bins, short(r.width));
    let _ = writeln!(s, "\namax, symmetric (s8 [-127, 127], scale = amax / 127)");
    for (k, v) in &r.amax {
        let scale = QuantParams::symmetric(*v).map_or(f32::NAN, |q| q.scale());
        let _ = writeln!(s, "  {k:<20} {:<14} scale {}", short(*v), short(scale));
    }
    if let Some(u) = &r.amax_unsigned {
        let _ = writeln!(
            s,
            "\namax, unsigned (data ≥ 0: u8 [0, 255], scale = amax / 255)"
        );
        for (k, v) in u {
            let scale = QuantParams::asymmetric(0.0, *v).map_or(f32::NAN, |q| q.scale());
            let _ = writeln!(s, "  {k:<20} {:<14} scale {}", short(*v), short(scale));
        }
    }
    let _ = writeln!(s, "\nrange [min, max] as parameters");
    let p = |q: &Params| match q {
        Ok(q) => format!(
            "scale {:<14} zero point {}",
            short(q.scale()),
            q.zero_point()
        ),
        Err(e) => format!("none: {e}"),
    };
    let _ = writeln!(s, "  {:<20} {}", "asymmetric u8", p(&r.asymmetric));
    let _ = writeln!(s, "  {:<20} {}", "torch.ao quint8", p(&r.torch_affine));
    let _ = writeln!(
        s,
        "  {:<20} {}",
        "torch.ao qint8 sym.",
        p(&r.torch_symmetric)
    );
    if let Some((axis, a)) = &r.per_channel {
        let _ = writeln!(
            s,
            "\nper-channel max |x| along axis {axis} ({} channels)",
            a.len()
        );
        for (i, v) in a.iter().enumerate() {
            let _ = writeln!(s, "  [{i}] {}", short(*v));
        }
    }
    s
}

/// An SVG of the histogram: log10(1 + count) per bin, with each method's amax as a vertical line.
fn plot(r: &Report, h: &Histogram) -> String {
    let (w, ht, left, right, top, bottom) = (1060.0f64, 420.0f64, 70.0, 250.0, 40.0, 60.0);
    let pw = w - left - right;
    let ph = ht - top - bottom;
    let counts = h.counts();
    let edges = h.edges();
    let xmax = edges[counts.len()] as f64;
    let xmax = if xmax > 0.0 { xmax } else { 1.0 };
    let ymax = counts
        .iter()
        .map(|&c| (1.0 + c as f64).log10())
        .fold(0.0, f64::max)
        .max(1.0);
    let x_of = |v: f64| left + pw * v / xmax;
    let y_of = |c: u64| top + ph * (1.0 - (1.0 + c as f64).log10() / ymax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let title = format!(
        "{} — histogram of |x|: {} values, {} bins of width {:.4e}",
        r.file,
        r.count,
        counts.len(),
        r.width
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"22\" font-size=\"14\">{}</text>",
        escape(&title)
    );
    // Bars as one path of steps.
    let mut d = format!("M{:.2},{:.2}", x_of(0.0), top + ph);
    for (i, &c) in counts.iter().enumerate() {
        let (x0, x1) = (x_of(edges[i] as f64), x_of(edges[i + 1] as f64));
        let y = y_of(c);
        let _ = write!(d, " L{x0:.2},{y:.2} L{x1:.2},{y:.2}");
    }
    let _ = write!(d, " L{:.2},{:.2} Z", x_of(xmax), top + ph);
    let _ = writeln!(
        s,
        "<path d=\"{d}\" fill=\"#9ab\" stroke=\"#567\" stroke-width=\"0.5\"/>"
    );
    // Axes and ticks.
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{0}\" stroke=\"black\"/>",
        top + ph,
        left + pw
    );
    for k in 0..=5 {
        let v = xmax * k as f64 / 5.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.4}</text>",
            x_of(v),
            top + ph + 16.0,
            v
        );
    }
    for k in 0..=(ymax.ceil() as usize) {
        let y = top + ph * (1.0 - k as f64 / ymax);
        if y >= top - 1.0 {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">1e{k}</text>",
                left - 6.0,
                y + 4.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">|x|</text>",
        left + pw / 2.0,
        ht - 20.0
    );
    // One line per method.
    const COLORS: [&str; 8] = [
        "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
    for (i, (name, v)) in r.amax.iter().enumerate() {
        let x = x_of(*v as f64);
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            s,
            "<line x1=\"{x:.2}\" y1=\"{top}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"4,2\"/>",
            top + ph
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{} = {}</text>",
            left + pw + 16.0,
            top + 14.0 + 16.0 * i as f64,
            escape(name),
            short(*v)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
