#!/usr/bin/env bash
# Create .venv with the pinned torch first (a bare torch requirement would pull a multi-GB CUDA build on a CPU
# machine), then specgen and its test tools. Safe to rerun: it only installs what is missing.
# TORCH_SPEC overrides the torch requirement, e.g. TORCH_SPEC="torch==2.13.0 --index-url ..." for a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
quiet() { "$@" > .venv/setup.log 2>&1 || { cat .venv/setup.log; echo "setup failed: $*"; exit 1; }; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  quiet .venv/bin/pip install -q --upgrade pip
  quiet .venv/bin/pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
# (re)install the project whenever pyproject.toml changed since the last install
stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat .venv/.specgen-deps 2>/dev/null)" != "$stamp" ] || ! .venv/bin/python -c "import specgen" 2>/dev/null; then
  quiet .venv/bin/pip install -q -e ".[dev]"
  echo "$stamp" > .venv/.specgen-deps
fi
# Debian tools the tests use: Chromium for the browser test (no browser download: only package registries are
# reachable here), espeak-ng for phonemes and voices, and a C compiler with OpenMP for specgen's CPU matmul kernel
# (specgen/kernels/build.py builds it on first use; without one, PyTorch's slower products run instead)
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
echo '#include <stdint.h>' | gcc -fopenmp -E - >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    quiet apt-get update -qq
    quiet apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "missing and this is not root: sudo apt-get install ${need[*]} (the tests need them)"
  fi
fi
