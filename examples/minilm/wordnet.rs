//! examples/minilm/wordnet.rs — real sentences for calibration and evaluation: glosses and
//! example sentences from WordNet's `data.{noun,verb,adj,adv}` (Debian's `wordnet-base`, fetched by
//! `scripts/fetch-real-data.sh`). On each synset line the gloss follows `|` (up to the first `;`)
//! and the examples are the double-quoted strings; synsets with both give an example → gloss
//! retrieval task.

use std::path::Path;

use anyhow::{Context as _, Result};

/// One synset's definition and its first example sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub gloss: String,
    pub example: String,
}

/// Every synset that has both a gloss and an example, in file order (noun, verb, adj, adv).
pub fn load_pairs(dir: impl AsRef<Path>) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for pos in ["noun", "verb", "adj", "adv"] {
        let path = dir.as_ref().join(format!("data.{pos}"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines() {
            // The license header lines start with two spaces.
            if line.starts_with("  ") {
                continue;
            }
            let Some((_, gloss_part)) = line.split_once("| ") else {
                continue;
            };
            let gloss = gloss_part.split(';').next().unwrap_or("").trim();
            let example = gloss_part
                .split('"')
                .nth(1)
                .map(str::trim)
                .filter(|e| !e.is_empty());
            if let (false, Some(example)) = (gloss.is_empty(), example) {
                pairs.push(Pair {
                    gloss: gloss.to_string(),
                    example: example.to_string(),
                });
            }
        }
    }
    Ok(pairs)
}

/// A deterministic spread of `n` pairs for evaluation and `c` further, disjoint pairs for
/// calibration: every `stride`-th pair, so all four parts of speech are represented.
pub fn split(pairs: &[Pair], n: usize, c: usize) -> (Vec<Pair>, Vec<Pair>) {
    let total = n + c;
    if total == 0 || pairs.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let stride = (pairs.len() / total).max(1);
    let picked: Vec<Pair> = pairs.iter().step_by(stride).take(total).cloned().collect();
    // Every `every`-th picked pair goes to calibration, so both draw from the whole spread.
    let every = total.checked_div(c).map_or(usize::MAX, |e| e.max(1));
    let mut eval = Vec::with_capacity(n);
    let mut calib = Vec::with_capacity(c);
    for (i, p) in picked.into_iter().enumerate() {
        if (i % every == 0 && calib.len() < c) || eval.len() >= n {
            if calib.len() < c {
                calib.push(p);
            }
        } else {
            eval.push(p);
        }
    }
    (eval, calib)
}
