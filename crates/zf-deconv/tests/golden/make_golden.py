#!/usr/bin/env python3
"""Golden deconvnet projections for zf-deconv's tests, made independently with PyTorch:
F.max_pool2d(ceil_mode=True, return_indices=True) on the forward pass, then, from one kept
activation of conv1..conv5 down to the pixels, F.relu, F.conv_transpose2d with the layer's own
weights (no bias; output_padding restoring the layer's input size) and F.max_unpool2d with the
recorded switches; LRN is passed through unchanged (as zf_deconv documents).

Writes, beside this file, for the ZF and the AlexNet-style first layer:
  <case>.weights.safetensors   weights under zfnet's keys, the config in metadata "zfnet.config"
  <case>.golden.safetensors    input [2,3,96,96]; for L in 1..5: "units.convL" int64 [3,4]
                               (image, channel, y, x) and "proj.convL" [3,3,96,96]

  .venv/bin/python crates/zf-deconv/tests/golden/make_golden.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
FIRST = {"zf": ((7, 2, 1), (5, 2, 0)), "alexnet": ((11, 4, 2), (5, 1, 2))}
CHANNELS = [6, 16, 24, 24, 16]
FC_UNITS, CLASSES, INPUT, BATCH = 32, 10, 96, 2


def geometry(first):
    (k1, s1, p1), (k2, s2, p2) = FIRST[first]
    return [(k1, s1, p1), (k2, s2, p2), (3, 1, 1), (3, 1, 1), (3, 1, 1)]


def forward(p, x, first):
    """Conv activations (after ReLU), the input size of every conv, and the pool switches."""
    geo = geometry(first)
    lrn = lambda t: F.local_response_norm(t, LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"])
    acts, in_sizes, sw = [], [], []
    h = x
    for i in range(5):
        k, s, pad = geo[i]
        in_sizes.append(h.shape[-2:])
        h = F.relu(F.conv2d(h, p[f"conv{i+1}.weight"], p[f"conv{i+1}.bias"], stride=s, padding=pad))
        acts.append(h)
        if i < 2:
            pre = h.shape[-2:]
            h, idx = F.max_pool2d(h, 3, 2, ceil_mode=True, return_indices=True)
            sw.append((idx, pre))
            h = lrn(h)
    return acts, in_sizes, sw


def project(p, first, acts, in_sizes, sw, layer, units):
    """Projections [K,3,S,S] of units (image, channel, y, x) of conv<layer> (1-based)."""
    geo = geometry(first)
    a = acts[layer - 1]
    h = torch.zeros(len(units), *a.shape[1:])
    for k, (img, c, y, x) in enumerate(units):
        h[k, c, y, x] = a[img, c, y, x]
    images = torch.tensor([u[0] for u in units])
    for l in range(layer, 0, -1):
        ks, s, pad = geo[l - 1]
        w = p[f"conv{l}.weight"]
        out = h.shape[-1]
        n = in_sizes[l - 1][-1]
        op = n - ((out - 1) * s - 2 * pad + ks)
        h = F.conv_transpose2d(F.relu(h), w, stride=s, padding=pad, output_padding=op)
        if l in (2, 3):
            idx, pre = sw[l - 2]
            h = F.max_unpool2d(h, idx[images], 3, 2, output_size=pre)
    return h


def make(case, first, seed):
    g = torch.Generator().manual_seed(seed)
    geo = geometry(first)
    shapes, cin = {}, 3
    for i, (k, _, _) in enumerate(geo):
        shapes[f"conv{i+1}.weight"] = [CHANNELS[i], cin, k, k]
        shapes[f"conv{i+1}.bias"] = [CHANNELS[i]]
        cin = CHANNELS[i]
    x = torch.randn(BATCH, 3, INPUT, INPUT, generator=g) * 50.0
    p = {}
    for key, shape in shapes.items():
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        p[key] = torch.randn(shape, generator=g) * ((2.0 / fan_in) ** 0.5 if key.endswith("weight") else 0.1)
    acts, in_sizes, sw = forward(p, x, first)
    # fc layers exist so that the file is a whole network; the deconvnet never reads them.
    n5 = F.max_pool2d(acts[4], 3, 2).flatten(1).shape[1]
    for key, shape in {"fc6.weight": [FC_UNITS, n5], "fc6.bias": [FC_UNITS], "fc7.weight": [FC_UNITS, FC_UNITS],
                       "fc7.bias": [FC_UNITS], "fc8.weight": [CLASSES, FC_UNITS], "fc8.bias": [CLASSES]}.items():
        p[key] = torch.randn(shape, generator=g) * 0.05
    golden = {"input": x}
    for layer in range(1, 6):
        a = acts[layer - 1]
        units = []
        # The strongest unit of a channel in each image, and a random position of a third
        # channel in image 0 (three projections of two images in one batched call).
        for img, c in ((0, layer % a.shape[1]), (1, (layer * 3 + 1) % a.shape[1])):
            flat = int(a[img, c].flatten().argmax())
            units.append((img, c, flat // a.shape[-1], flat % a.shape[-1]))
        y, xx = [int(v) for v in torch.randint(0, a.shape[-1], (2,), generator=g)]
        units.append((0, (layer + 2) % a.shape[1], y, xx))
        golden[f"units.conv{layer}"] = torch.tensor(units, dtype=torch.int64)
        golden[f"proj.conv{layer}"] = project(p, first, acts, in_sizes, sw, layer, units)
    config = {"first_layer": first, "channels": CHANNELS, "fc_units": FC_UNITS, "classes": CLASSES,
              "lrn": LRN, "input_size": INPUT, "dropout": 0.5}
    save_file({k: v.contiguous() for k, v in p.items()}, os.path.join(HERE, f"{case}.weights.safetensors"),
              metadata={"format": "pt", "zfnet.config": json.dumps(config)})
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(HERE, f"{case}.golden.safetensors"),
              metadata={"torch": torch.__version__})
    print(case, {k: tuple(v.shape) for k, v in golden.items()})


if __name__ == "__main__":
    with torch.no_grad():
        make("zf", "zf", 2000)
        make("alexnet", "alexnet", 2001)
