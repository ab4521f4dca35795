#!/usr/bin/env bash
# scripts/fetch-fashion-mnist.sh — fetch Fashion-MNIST (Zalando, MIT/Expat) from Debian's
# `dataset-fashion-mnist` package into the git-ignored data/fetched/fashion-mnist/, for the
# end-to-end example (`cargo run --release --example end_to_end`), which uses it when present and
# runs on the committed scikit-learn digits alone otherwise. Needs `apt-get` and `dpkg-deb` and a
# reachable Debian mirror; nothing else. The four IDX files are checked against the sha256 sums
# of the package's bookworm version (0.0~git20200523.55506a9-1).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=data/fetched/fashion-mnist
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && apt-get download dataset-fashion-mnist)
dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x"
src="$tmp/x/usr/share/datasets/fashion-mnist"
cp "$src"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$dest/"
cp "$tmp/x/usr/share/doc/dataset-fashion-mnist/copyright" "$dest/COPYRIGHT"

(cd "$dest" && sha256sum -c --quiet <<'SUMS'
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
SUMS
)
echo "Fashion-MNIST is in $dest"
ls -la "$dest"
