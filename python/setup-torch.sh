#!/usr/bin/env bash
# Makes a Python virtual environment with PyTorch, torchvision, safetensors and Captum, for `cargo xtask bench` (the
# peer it times zfnet against) and for python/zfnet_torch.py. Default place: ./.venv-torch,
# which `cargo xtask bench` finds by itself.
set -euo pipefail
dir="${1:-.venv-torch}"
python3 -m venv "$dir"
"$dir/bin/pip" install -q torch torchvision safetensors captum
echo "ready: $dir/bin/python python/zfnet_torch.py --help"
