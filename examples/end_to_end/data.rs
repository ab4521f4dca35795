//! examples/end_to_end/data.rs — the example's data sets, read from disk with no network: the
//! scikit-learn digits committed under `data/` (always), and Fashion-MNIST from
//! `data/fetched/fashion-mnist/` when `scripts/fetch-fashion-mnist.sh` has put it there. Also
//! included by `tests/qat_training.rs`.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A classification data set: `x: [rows, features]` row-major in `[0, 1]`, labels `0..classes`.
pub struct Dataset {
    pub name: &'static str,
    pub x: Vec<f32>,
    pub labels: Vec<u8>,
    pub features: usize,
    pub classes: usize,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let f = self.features;
        let mut x = Vec::with_capacity(idx.len() * f);
        for &r in idx {
            x.extend_from_slice(&self.x[r * f..(r + 1) * f]);
        }
        Dataset {
            name: self.name,
            x,
            labels: idx.iter().map(|&r| self.labels[r]).collect(),
            features: f,
            classes: self.classes,
        }
    }

    /// The first `n` rows (all if fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.rows())).collect();
        self.select(&idx)
    }
}

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gunzip(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(out)
}

/// scikit-learn's digits: 1797 images of 8×8 pixels 0..16 (scaled to `[0, 1]` by /16), 10 classes.
pub fn load_digits() -> Result<Dataset> {
    let path = repo_root().join("data/digits.csv.gz");
    let text = String::from_utf8(gunzip(&path)?).context("digits.csv.gz is not UTF-8")?;
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let vals: Vec<&str> = line.split(',').collect();
        if vals.len() != 65 {
            bail!(
                "digits.csv.gz line {}: {} fields, expected 65",
                i + 1,
                vals.len()
            );
        }
        for v in &vals[..64] {
            let p: f32 = v
                .trim()
                .parse()
                .with_context(|| format!("line {}: pixel {v:?}", i + 1))?;
            x.push(p / 16.0);
        }
        let l: u8 = vals[64]
            .trim()
            .parse()
            .with_context(|| format!("line {}: label", i + 1))?;
        if l > 9 {
            bail!("digits.csv.gz line {}: label {l}", i + 1);
        }
        labels.push(l);
    }
    if labels.len() != 1797 {
        bail!("digits.csv.gz holds {} rows, expected 1797", labels.len());
    }
    Ok(Dataset {
        name: "digits",
        x,
        labels,
        features: 64,
        classes: 10,
    })
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_idx_images(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let b = gunzip(path)?;
    if b.len() < 16 || be_u32(&b, 0) != 0x0000_0803 {
        bail!("{}: not an IDX3 ubyte file", path.display());
    }
    let (n, r, c) = (
        be_u32(&b, 4) as usize,
        be_u32(&b, 8) as usize,
        be_u32(&b, 12) as usize,
    );
    if b.len() != 16 + n * r * c {
        bail!(
            "{}: {} bytes for {n}×{r}×{c} images",
            path.display(),
            b.len()
        );
    }
    Ok((
        b[16..].iter().map(|&p| p as f32 / 255.0).collect(),
        n,
        r * c,
    ))
}

fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let b = gunzip(path)?;
    if b.len() < 8 || be_u32(&b, 0) != 0x0000_0801 {
        bail!("{}: not an IDX1 ubyte file", path.display());
    }
    let n = be_u32(&b, 4) as usize;
    if b.len() != 8 + n || b[8..].iter().any(|&l| l > 9) {
        bail!("{}: bad label file", path.display());
    }
    Ok(b[8..].to_vec())
}

/// Fashion-MNIST `(train, test)` from `data/fetched/fashion-mnist/`, or `None` when it is not
/// there (an error when it is there but broken).
pub fn load_fashion_mnist() -> Result<Option<(Dataset, Dataset)>> {
    let dir = repo_root().join("data/fetched/fashion-mnist");
    let files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    if !files.iter().all(|f| dir.join(f).is_file()) {
        return Ok(None);
    }
    let mut sets = Vec::new();
    for (img, lab) in [(files[0], files[1]), (files[2], files[3])] {
        let (x, n, features) = read_idx_images(&dir.join(img))?;
        let labels = read_idx_labels(&dir.join(lab))?;
        if labels.len() != n {
            bail!("{img}: {n} images but {} labels", labels.len());
        }
        sets.push(Dataset {
            name: "fashion-mnist",
            x,
            labels,
            features,
            classes: 10,
        });
    }
    let test = sets.pop().expect("two sets");
    let train = sets.pop().expect("two sets");
    Ok(Some((train, test)))
}
