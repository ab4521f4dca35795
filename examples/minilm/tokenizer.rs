//! examples/minilm/tokenizer.rs — BERT's uncased WordPiece tokenizer, as all-MiniLM-L6-v2's
//! `tokenizer.json` configures it: special tokens matched in the raw text, `BertNormalizer`
//! (clean text, pad CJK ideographs, strip accents by NFD, lowercase), `BertPreTokenizer`
//! (whitespace, then each punctuation character on its own), greedy longest-match WordPiece with
//! the `##` prefix, truncation to 128 tokens with `[CLS] … [SEP]`. The first step of the MiniLM
//! forward; tested against ids from the reference `tokenizers` library
//! (`tests/data/minilm-tokenizer-golden.json`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use unicode_general_category::{get_general_category, GeneralCategory as Gc};
use unicode_normalization::UnicodeNormalization;

/// A WordPiece vocabulary and the pipeline settings read from `tokenizer.json`.
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    /// Added (special) tokens matched verbatim in the raw text, longest first.
    specials: Vec<(String, u32)>,
    unk: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_chars_per_word: usize,
    max_len: usize,
}

impl WordPiece {
    /// Load `tokenizer.json`. Refuses pipelines other than BERT's (a different normalizer or
    /// model type would tokenize differently).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let j: Value = serde_json::from_slice(&bytes)?;
        let model = &j["model"];
        if model["type"] != "WordPiece" {
            bail!(
                "{}: model type {} is not WordPiece",
                path.display(),
                model["type"]
            );
        }
        let n = &j["normalizer"];
        if n["type"] != "BertNormalizer"
            || n["lowercase"] != true
            || n["clean_text"] != true
            || n["handle_chinese_chars"] != true
            || !(n["strip_accents"].is_null() || n["strip_accents"] == true)
        {
            bail!(
                "{}: normalizer {n} is not BERT's uncased one",
                path.display()
            );
        }
        if j["pre_tokenizer"]["type"] != "BertPreTokenizer" {
            bail!("{}: pre-tokenizer is not BertPreTokenizer", path.display());
        }
        let vocab: HashMap<String, u32> = model["vocab"]
            .as_object()
            .ok_or_else(|| anyhow!("no vocab"))?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_u64().ok_or_else(|| anyhow!("bad id for {k}"))? as u32,
                ))
            })
            .collect::<Result<_>>()?;
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| anyhow!("vocab lacks {t}"))
        };
        let mut specials: Vec<(String, u32)> = j["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["normalized"] == false)
            .filter_map(|t| Some((t["content"].as_str()?.to_string(), t["id"].as_u64()? as u32)))
            .collect();
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let max_len = j["truncation"]["max_length"].as_u64().unwrap_or(512) as usize;
        Ok(WordPiece {
            unk: id(model["unk_token"].as_str().unwrap_or("[UNK]"))?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            prefix: model["continuing_subword_prefix"]
                .as_str()
                .unwrap_or("##")
                .to_string(),
            max_chars_per_word: model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize,
            max_len,
            vocab,
            specials,
        })
    }

    /// Token ids of `text`: `[CLS] … [SEP]`, at most the configured maximum (128) long, no padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        // Special tokens written in the text are matched before normalization (they are not
        // "normalized" added tokens); the pieces between them go through the whole pipeline.
        let mut rest = text;
        while !rest.is_empty() {
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|pos| (pos, s.len(), *id)))
                .min_by_key(|&(pos, len, _)| (pos, std::cmp::Reverse(len)));
            match hit {
                Some((pos, len, id)) => {
                    self.encode_plain(&rest[..pos], &mut ids);
                    ids.push(id);
                    rest = &rest[pos + len..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    rest = "";
                }
            }
        }
        ids.truncate(self.max_len.saturating_sub(2));
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.cls);
        out.extend(ids);
        out.push(self.sep);
        out
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        let normalized = normalize(text);
        for word in pre_tokenize(&normalized) {
            self.word_piece(word, ids);
        }
    }

    /// Greedy longest-match-first WordPiece of one pre-token; a word with any piece missing from
    /// the vocabulary, or longer than the limit, is one `[UNK]`.
    fn word_piece(&self, word: &str, ids: &mut Vec<u32>) {
        if word.chars().count() > self.max_chars_per_word {
            ids.push(self.unk);
            return;
        }
        let bounds: Vec<usize> = word
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(word.len()))
            .collect();
        let mut pieces = Vec::new();
        let mut start = 0; // index into bounds
        let mut key = String::new();
        while start < bounds.len() - 1 {
            let mut end = bounds.len() - 1;
            let mut found = None;
            while end > start {
                key.clear();
                if start > 0 {
                    key.push_str(&self.prefix);
                }
                key.push_str(&word[bounds[start]..bounds[end]]);
                if let Some(&id) = self.vocab.get(&key) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    pieces.push(id);
                    start = end;
                }
                None => {
                    ids.push(self.unk);
                    return;
                }
            }
        }
        ids.extend(pieces);
    }
}

/// `BertNormalizer` with clean_text, handle_chinese_chars, strip_accents and lowercase, in the
/// reference order.
fn normalize(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            s.push(' ');
        } else if is_chinese_char(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            s.push(c);
        }
    }
    let stripped: String = s
        .nfd()
        .filter(|&c| get_general_category(c) != Gc::NonspacingMark)
        .collect();
    stripped.chars().flat_map(char::to_lowercase).collect()
}

/// `BertPreTokenizer`: split on whitespace (dropped), then isolate every punctuation character.
fn pre_tokenize(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in s.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        let mut start = 0;
        for (i, c) in word.char_indices() {
            if is_punctuation(c) {
                if start < i {
                    out.push(&word[start..i]);
                }
                out.push(&word[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        if start < word.len() {
            out.push(&word[start..]);
        }
    }
    out
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Unicode "Other" categories (Cc, Cf, Cn, Co, Cs), except tab and newlines, which count as
/// whitespace.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        get_general_category(c),
        Gc::Control | Gc::Format | Gc::Unassigned | Gc::PrivateUse | Gc::Surrogate
    )
}

/// ASCII punctuation (which includes symbols like `$`, `+`, `^`) or any Unicode P* category.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            Gc::ConnectorPunctuation
                | Gc::DashPunctuation
                | Gc::ClosePunctuation
                | Gc::FinalPunctuation
                | Gc::InitialPunctuation
                | Gc::OtherPunctuation
                | Gc::OpenPunctuation
        )
}

/// The CJK ideograph blocks BERT pads with spaces.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}
