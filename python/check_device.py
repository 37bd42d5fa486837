#!/usr/bin/env python3
"""A device check of a zfnet binary, for a machine where only the binary and Python travel (a
GPU box without a Rust toolchain): its forward pass on DEVICE against the committed PyTorch
golden files (every tap and switch of ZFNet's three fixtures, every layer of torchvision's
AlexNet and VGG-11-BN), and its projections and occlusion maps on DEVICE against its own CPU
path. Needs numpy and safetensors; run from anywhere:

    python3 python/check_device.py target/release/zfnet cuda

With a Rust toolchain on the machine, `ZF_TEST_DEVICE=cuda cargo test --features zf-cli/cuda`
runs the golden tests themselves there. Exits 1 when any comparison fails."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

ZF, DEV = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
T = tempfile.mkdtemp()
fails = []


def run(*args):
    r = subprocess.run([ZF, *args, "--device", DEV], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"zfnet {' '.join(args)} failed: {r.stderr[-2000:]}")


def rel(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def check(name, a, b, tol):
    e = rel(a, b)
    ok = e <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: relative error {e:.2e} (tolerance {tol:g})")
    if not ok:
        fails.append(name)


# ZFNet's golden fixtures: every tap and switch of `zfnet forward`.
for case in ["zf", "alexnet", "zf_nolrn"]:
    d = f"{ROOT}/crates/zf-model/tests/golden"
    g = load_file(f"{d}/{case}.golden.safetensors")
    save_file({"input": g["input"]}, f"{T}/in.safetensors")
    run("forward", "--weights", f"{d}/{case}.weights.safetensors", "--input", f"{T}/in.safetensors",
        "--out", f"{T}/out.safetensors")
    out = load_file(f"{T}/out.safetensors")
    n = 0
    for k, want in g.items():
        if k in out and k != "input":
            if k.endswith(".switches"):
                same = float((out[k] == want).mean())
                print(f"{'ok  ' if same > 0.999 else 'FAIL'} {case}/{k}: {100 * same:.3f}% of switches equal")
                if same <= 0.999:
                    fails.append(f"{case}/{k}")
            else:
                check(f"{case}/{k}", out[k], want, 1e-4)
            n += 1
    print(f"     {case}: {n} tensors compared")

# torchvision's AlexNet and VGG-11-BN (.pth as PyTorch wrote them): every layer.
for arch in ["alexnet", "vgg11_bn"]:
    d = f"{ROOT}/crates/zf-model/tests/torchvision"
    g = load_file(f"{d}/{arch}.golden.safetensors")
    mean = (255.0 * np.array([0.485, 0.456, 0.406], dtype=np.float32)).reshape(1, 3, 1, 1)
    x = (g["input"] - mean).astype(np.float32)
    save_file({"input": x}, f"{T}/in.safetensors")
    run("forward", "--weights", f"{d}/{arch}.pth", "--input", f"{T}/in.safetensors",
        "--input-size", str(x.shape[-1]), "--out", f"{T}/out.safetensors")
    out = load_file(f"{T}/out.safetensors")
    n = 0
    for k, want in g.items():
        if k.startswith("act.") and k[4:] in out:
            check(f"{arch}/{k[4:]}", out[k[4:]], want, 1e-4)
            n += 1
    print(f"     {arch}: {n} layers compared")

# The deconvnet and occlusion: CUDA against the CPU path on the same files.
w = f"{ROOT}/crates/zf-probe/tests/golden/probe.weights.safetensors"
g = load_file(f"{ROOT}/crates/zf-probe/tests/golden/probe.golden.safetensors")
save_file({"input": g["input"][:1] if g["input"].ndim == 4 else g["input"]}, f"{T}/one.safetensors")
for cmd, extra, f in [("project", ["--layer", "conv5", "--channel", "3"], "projection.safetensors"),
                      ("occlusion", ["--label", "3", "--size", "32", "--stride", "16"], "occlusion.safetensors")]:
    outs = {}
    for dev in ["cpu", DEV]:
        r = subprocess.run([ZF, cmd, "--weights", w, "--input", f"{T}/one.safetensors", *extra,
                            "--out", f"{T}/{cmd}-{dev}", "--device", dev], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"zfnet {cmd} on {dev} failed: {r.stderr[-2000:]}")
        outs[dev] = load_file(f"{T}/{cmd}-{dev}/{f}")
    for k in outs["cpu"]:
        check(f"{cmd} {k} ({DEV} vs cpu)", outs[DEV][k].astype(np.float32), outs["cpu"][k].astype(np.float32), 1e-4)

print(json.dumps({"device": DEV, "failures": fails}))
sys.exit(1 if fails else 0)
