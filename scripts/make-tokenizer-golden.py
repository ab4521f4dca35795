#!/usr/bin/env python3
"""scripts/make-tokenizer-golden.py — write tests/data/minilm-tokenizer-golden.json: token ids the
reference Hugging Face `tokenizers` library (PyPI) gives for all-MiniLM-L6-v2's tokenizer.json, on
WordNet glosses and examples plus strings that exercise every normalizer and pre-tokenizer rule
(accents, CJK, control and zero-width characters, Unicode punctuation, special tokens written in
the text, over-long words, truncation at 128 tokens). The MiniLM example's WordPiece tokenizer is
tested against it.

Needs the files fetched by scripts/fetch-real-data.sh.
Run:  python3 -m pip install tokenizers && python3 scripts/make-tokenizer-golden.py
"""
import json
import os
import re

import tokenizers

ROOT = os.path.join(os.path.dirname(__file__), "..")
tok = tokenizers.Tokenizer.from_file(os.path.join(ROOT, "models/all-MiniLM-L6-v2/tokenizer.json"))
tok.no_padding()  # keep the file's truncation at 128; drop its fixed padding

texts = []
for pos in ("noun", "verb", "adj", "adv"):
    with open(os.path.join(ROOT, f"data/fetched/wordnet/data.{pos}"), encoding="utf-8") as f:
        lines = [l for l in f if not l.startswith("  ")]
    for l in lines[7::len(lines) // 40][:40]:
        gloss = l.split("| ", 1)[1].strip()
        texts.append(gloss.split(";")[0].strip())
        texts.extend(re.findall(r'"([^"]*)"', gloss)[:1])

texts += [
    "This is an example sentence",
    "",
    "   \t\n  ",
    "Café naïve résumé Ångström façade Zoë",
    "北京是中国的首都 and 東京 too",
    "Hello,world!!! (test) [x] {y} 'single' \"double\" em—dash en–dash…",
    "a\u0000b\u0007c\td\re\nf",
    "zero\u200bwidth and\u00a0nbsp and soft\u00adhyphen",
    "¿Qué pasa? ¡Sí! «guillemets» „low quotes“ ‘curly’",
    "Αθήνα is the capital of Ελλάδα; Москва — of Россия",
    "emoji 🙂 and symbols ∑ ∞ ≠ © ® ™ $5 €10 £3 ¥",
    "[MASK] is special, so are [CLS] and [SEP]; [mask] is not",
    "don't can't won't it's 3.14 1,000,000 e-mail x@y.com http://a.b/c?d=e",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 101 + " word " + "b" * 100,
    "ﬁ ligature and Ⅻ roman and ① circled and ２ fullwidth",
    "combining e\u0301 vs precomposed é; İstanbul ß ẞ",
    " ".join(["token"] * 200),
    "The quick brown fox jumps over the lazy dog. " * 12,
]

golden = []
for t in texts:
    enc = tok.encode(t)
    golden.append({"text": t, "ids": enc.ids})
out = os.path.join(ROOT, "tests/data/minilm-tokenizer-golden.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump({"tokenizers_version": tokenizers.__version__, "cases": golden}, f,
              ensure_ascii=False, indent=0)
    f.write("\n")
print(f"wrote {len(golden)} cases to {out}")
