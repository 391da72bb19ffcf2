#!/usr/bin/env bash
# Download the wheels run.sh installs on the GPU machine (which has no network) into .whl/,
# make git ignore .whl/, and check that the checkout plus the wheels fit the 64 MiB a call carries.
# bitsandbytes 0.50.2 (43 MB; ships libbitsandbytes_cuda130.so for torch 2.11+cu130) is for QLoRA;
# hatchling and its missing needs (editables, tomlkit, trove-classifiers; ~150 kB) let
# `pip install --no-build-isolation -e .` build offline. The image has torch, numpy, packaging,
# pathspec and pluggy already.
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p .whl
git check-ignore -q .whl/probe.whl || echo '/.whl/' >> "$exclude"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  bitsandbytes==0.50.2 hatchling==1.33.0 editables==0.6 tomlkit==0.15.2 trove-classifiers==2026.9.21.13
wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | grep total$ | awk '{s += $1} END {print s + 0}')
total=$((wheels + tree))
echo "wheels $((wheels / 1024)) KiB + working tree $((tree / 1024)) KiB = $((total / 1024)) KiB of 65536 KiB"
(( total < 64 * 1024 * 1024 )) || { echo "too large to carry: drop bitsandbytes (QLoRA is then skipped)"; exit 1; }
