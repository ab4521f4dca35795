//! qat/train.rs — the small f32 training toolkit quantization-aware training needs, and no more:
//! a parameter with its gradient and optimizer state, SGD (with momentum) and Adam, the three
//! matrix products of a Linear layer's forward and backward, ReLU, softmax cross-entropy, and a
//! seeded generator. Enough to train an MLP for the end-to-end example; not a framework.
//!
//! Matrices are row-major; a Linear layer is `y[m, n] = x[m, k] · w[n, k]ᵀ + b[n]` (the
//! `nn.Linear` layout, as in the GEMM). Every loop has a fixed order per output element, so
//! results do not depend on the number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// A trainable tensor: values, accumulated gradient, and the optimizer's moment buffers.
#[derive(Clone, Debug)]
pub struct Param {
    /// The values.
    pub value: Vec<f32>,
    /// The gradient accumulated since the last [`Param::zero_grad`].
    pub grad: Vec<f32>,
    /// Whether optimizers update it.
    pub trainable: bool,
    /// Multiplies the optimizer's learning rate for this parameter.
    pub lr_scale: f32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Param {
    /// A parameter holding `value`, gradients zero.
    pub fn new(value: Vec<f32>, trainable: bool) -> Self {
        let n = value.len();
        Param {
            value,
            grad: vec![0.0; n],
            trainable,
            lr_scale: 1.0,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
    /// Reset the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }
    /// Number of values.
    pub fn len(&self) -> usize {
        self.value.len()
    }
    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
    /// Err unless it holds `want` values and as many gradients (the fields are public: a caller
    /// may have resized them). `owner.part` names it in the error, formatted only then (this
    /// runs on every forward and backward).
    pub(crate) fn check_size(&self, owner: &str, part: &str, want: usize) -> Result<()> {
        if self.value.len() == want && self.grad.len() == want {
            return Ok(());
        }
        Err(Error::Dimension {
            what: "trainable parameter",
            detail: format!(
                "`{owner}.{part}` holds {} values and {} gradients, expected {want}",
                self.value.len(),
                self.grad.len()
            ),
        })
    }
}

/// An optimizer updates parameters from their gradients.
pub trait Optimizer {
    /// One update of every trainable parameter in `params` (gradients are left as they are).
    fn step(&mut self, params: &mut [&mut Param]);
}

/// Stochastic gradient descent with (heavy-ball) momentum: `v = μ·v + g`, `p −= lr·v`.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [&mut Param]) {
        for p in params.iter_mut().filter(|p| p.trainable) {
            let lr = self.lr * p.lr_scale;
            let Param { value, grad, m, .. } = &mut **p;
            for ((x, &g), v) in value.iter_mut().zip(grad.iter()).zip(m.iter_mut()) {
                *v = self.momentum * *v + g;
                *x -= lr * *v;
            }
        }
    }
}

/// Adam (Kingma & Ba 2015) with bias correction.
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    t: i32,
}

impl Adam {
    /// Adam with the usual `β1 = 0.9`, `β2 = 0.999`, `ε = 1e-8`.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [&mut Param]) {
        self.t = self.t.saturating_add(1);
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        for p in params.iter_mut().filter(|p| p.trainable) {
            let lr = self.lr * p.lr_scale;
            let Param {
                value, grad, m, v, ..
            } = &mut **p;
            for (((x, &g), m), v) in value
                .iter_mut()
                .zip(grad.iter())
                .zip(m.iter_mut())
                .zip(v.iter_mut())
            {
                *m = self.beta1 * *m + (1.0 - self.beta1) * g;
                *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
                *x -= lr * (*m / c1) / ((*v / c2).sqrt() + self.eps);
            }
        }
    }
}

/// SplitMix64, seeded: weight initialization and shuffling are reproducible from the seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Products below this many multiply-adds run on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// `Σ a[i]·b[i]` with 8 independent partial sums (so it vectorizes), then summed in a fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += a · x`.
#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn check_len(what: &'static str, v: &[f32], rows: usize, cols: usize) -> Result<()> {
    let expected = crate::error::checked_len(what, rows, cols)?;
    if v.len() != expected {
        return Err(Error::shape(what, expected, v.len()));
    }
    Ok(())
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ (+ b[n])` in f32 (the forward of a Linear layer).
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<Vec<f32>> {
    check_len("linear input [m, k]", x, m, k)?;
    check_len("linear weight [n, k]", w, n, k)?;
    if let Some(b) = b {
        check_len("linear bias [n]", b, n, 1)?;
    }
    let mut y = vec![0f32; m * n];
    if n == 0 {
        return Ok(y);
    }
    let row = |(i, yr): (usize, &mut [f32])| {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in yr.iter_mut().enumerate() {
            let v = dot(xr, &w[j * k..(j + 1) * k]);
            *o = match b {
                Some(b) => v + b[j],
                None => v,
            };
        }
    };
    if m * n * k >= PARALLEL_MIN_WORK {
        y.par_chunks_mut(n).enumerate().for_each(row);
    } else {
        y.chunks_mut(n).enumerate().for_each(row);
    }
    Ok(y)
}

/// `dx[m, k] = dy[m, n] · w[n, k]` (the input gradient of a Linear layer).
pub fn linear_backward_input(
    dy: &[f32],
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Result<Vec<f32>> {
    check_len("linear output gradient [m, n]", dy, m, n)?;
    check_len("linear weight [n, k]", w, n, k)?;
    let mut dx = vec![0f32; m * k];
    if k == 0 {
        return Ok(dx);
    }
    let row = |(i, dxr): (usize, &mut [f32])| {
        for j in 0..n {
            axpy(dy[i * n + j], &w[j * k..(j + 1) * k], dxr);
        }
    };
    if m * n * k >= PARALLEL_MIN_WORK {
        dx.par_chunks_mut(k).enumerate().for_each(row);
    } else {
        dx.chunks_mut(k).enumerate().for_each(row);
    }
    Ok(dx)
}

/// `dw[n, k] = dy[m, n]ᵀ · x[m, k]` (the weight gradient of a Linear layer), summed over rows in
/// order.
pub fn linear_backward_weight(
    dy: &[f32],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Result<Vec<f32>> {
    check_len("linear output gradient [m, n]", dy, m, n)?;
    check_len("linear input [m, k]", x, m, k)?;
    let mut dw = vec![0f32; n * k];
    if k == 0 {
        return Ok(dw);
    }
    let row = |(j, dwr): (usize, &mut [f32])| {
        for i in 0..m {
            axpy(dy[i * n + j], &x[i * k..(i + 1) * k], dwr);
        }
    };
    if m * n * k >= PARALLEL_MIN_WORK {
        dw.par_chunks_mut(k).enumerate().for_each(row);
    } else {
        dw.chunks_mut(k).enumerate().for_each(row);
    }
    Ok(dw)
}

/// `max(x, 0)` in place.
pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// The gradient of ReLU: `dy` where the ReLU's output `y` is positive, 0 elsewhere, in place.
pub fn relu_backward(y: &[f32], dy: &mut [f32]) {
    for (d, &v) in dy.iter_mut().zip(y) {
        if v <= 0.0 {
            *d = 0.0;
        }
    }
}

/// Mean softmax cross-entropy of `logits: [m, classes]` against `labels` and its gradient with
/// respect to the logits (`(softmax − onehot) / m`). Computed with the max subtracted; the loss in
/// f64.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
) -> Result<(f32, Vec<f32>)> {
    let m = labels.len();
    check_len("logits [m, classes]", logits, m, classes)?;
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(Error::param(
            "label",
            format!("label {l} at row {i} is not below {classes} classes"),
        ));
    }
    crate::quant::check_finite("logits", logits)?;
    let mut grad = vec![0f32; logits.len()];
    let mut loss = 0f64;
    for i in 0..m {
        let z = &logits[i * classes..(i + 1) * classes];
        let g = &mut grad[i * classes..(i + 1) * classes];
        let mx = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (g, &v) in g.iter_mut().zip(z) {
            *g = (v - mx).exp();
            sum += *g;
        }
        let y = labels[i] as usize;
        loss += (sum.ln() - (z[y] - mx)) as f64;
        for g in g.iter_mut() {
            *g /= sum * m as f32;
        }
        g[y] -= 1.0 / m as f32;
    }
    Ok(((loss / m.max(1) as f64) as f32, grad))
}

/// Index of the largest value of each row of `logits: [m, classes]` (the first on ties).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    if classes == 0 {
        return Vec::new();
    }
    logits
        .chunks_exact(classes)
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Fraction of rows whose arg-max equals the label.
pub fn accuracy(logits: &[f32], labels: &[u8], classes: usize) -> f32 {
    let pred = argmax_rows(logits, classes);
    if pred.is_empty() {
        return 0.0;
    }
    let ok = pred
        .iter()
        .zip(labels)
        .filter(|(&p, &l)| p == l as usize)
        .count();
    ok as f32 / pred.len() as f32
}
