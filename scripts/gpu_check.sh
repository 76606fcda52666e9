#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py) and the `gpu`-marked tests; skips with a message without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -m gpu tests/test_gpu.py
python scripts/gpu_check.py "$@"
