#!/usr/bin/env python3
"""Golden SGD steps for zf-train's tests, made independently with PyTorch: a reduced-width ZFNet
(F.conv2d, F.max_pool2d ceil mode, F.local_response_norm, F.linear), mean cross-entropy, and three
updates of SGD with momentum in the Caffe form (v = 0.9 v - lr (g + wd w); w += v; lr 1e-2,
wd 1e-3), each followed by the paper's renormalization (conv filters with RMS over 0.1 scaled back
to 0.1). Dropout off. One batch per step, drawn here.

Writes beside this file: sgd.weights.safetensors (the starting weights, config in metadata) and
sgd.golden.safetensors (inputs "x0".."x2", labels "y0".."y2", and the final weights "final.<key>").

  .venv/bin/python crates/zf-train/tests/golden/make_golden.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
C = [6, 16, 24, 24, 16]
FC, CLASSES, S, B = 32, 10, 96, 4
LR, MOM, WD, RMS = 1e-2, 0.9, 1e-3, 0.1


def forward(p, x):
    lrn = lambda t: F.local_response_norm(t, 5, 1e-4, 0.75, 2.0)
    h = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], stride=2, padding=1))
    h = lrn(F.max_pool2d(h, 3, 2, ceil_mode=True))
    h = F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], stride=2))
    h = lrn(F.max_pool2d(h, 3, 2, ceil_mode=True))
    for n in ("conv3", "conv4", "conv5"):
        h = F.relu(F.conv2d(h, p[n + ".weight"], p[n + ".bias"], padding=1))
    h = F.max_pool2d(h, 3, 2).flatten(1)
    h = F.relu(F.linear(h, p["fc6.weight"], p["fc6.bias"]))
    h = F.relu(F.linear(h, p["fc7.weight"], p["fc7.bias"]))
    return F.linear(h, p["fc8.weight"], p["fc8.bias"])


def main():
    g = torch.Generator().manual_seed(3000)
    shapes = {"conv1.weight": [C[0], 3, 7, 7], "conv2.weight": [C[1], C[0], 5, 5], "conv3.weight": [C[2], C[1], 3, 3],
              "conv4.weight": [C[3], C[2], 3, 3], "conv5.weight": [C[4], C[3], 3, 3]}
    # 96 -> conv1 46 -> pool 23 -> conv2 10 -> pool 5 -> pool5 2: fc6 sees 16 * 2 * 2.
    shapes.update({"fc6.weight": [FC, C[4] * 4], "fc7.weight": [FC, FC], "fc8.weight": [CLASSES, FC]})
    p = {}
    for k, shape in shapes.items():
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        # conv1 starts above the renormalization radius, so the first renormalization acts.
        std = 0.15 if k == "conv1.weight" else (2.0 / fan_in) ** 0.5 * 0.7
        p[k] = torch.randn(shape, generator=g) * std
        p[k.replace("weight", "bias")] = torch.randn(shape[0], generator=g) * 0.01
    start = {k: v.clone() for k, v in p.items()}
    golden = {}
    vel = {k: torch.zeros_like(v) for k, v in p.items()}
    for step in range(3):
        x = torch.randn(B, 3, S, S, generator=g) * 0.8
        y = torch.randint(0, CLASSES, (B,), generator=g)
        golden[f"x{step}"], golden[f"y{step}"] = x, y
        leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        F.cross_entropy(forward(leaves, x), y).backward()
        with torch.no_grad():
            for k in p:
                vel[k] = MOM * vel[k] - LR * (leaves[k].grad + WD * p[k])
                p[k] = p[k] + vel[k]
                if k.startswith("conv") and k.endswith("weight"):
                    rms = p[k].flatten(1).pow(2).mean(1).sqrt()
                    scale = torch.where(rms > RMS, RMS / rms, torch.ones_like(rms))
                    p[k] = p[k] * scale[:, None, None, None]
    golden.update({f"final.{k}": v for k, v in p.items()})
    config = {"first_layer": "zf", "channels": C, "fc_units": FC, "classes": CLASSES,
              "lrn": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}, "input_size": S, "dropout": 0.5}
    save_file({k: v.contiguous() for k, v in start.items()}, os.path.join(HERE, "sgd.weights.safetensors"),
              metadata={"format": "pt", "zfnet.config": json.dumps(config)})
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(HERE, "sgd.golden.safetensors"),
              metadata={"torch": torch.__version__, "lr": str(LR), "momentum": str(MOM), "weight_decay": str(WD)})
    print("written")


if __name__ == "__main__":
    main()
