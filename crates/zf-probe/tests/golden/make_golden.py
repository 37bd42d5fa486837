#!/usr/bin/env python3
"""Golden fixtures for zf-probe's tests, made by an independent PyTorch implementation of the
occlusion maps (Fig. 7) and of the correspondence measure Δ (Table 1, as zf_probe::correspondence defines it).

Writes, beside this file:
  probe.weights.safetensors  a reduced-width ZFNet (zfnet's keys, config in the metadata)
  probe.golden.safetensors   input [3,S,S]; the occlusion maps for label 3, square 32, stride 16:
                             occ.feature_map, occ.true_prob [R*R], occ.top_label [R*R] (int64),
                             occ.map (int64, the conv5 map with the largest activation);
                             images [4,3,S,S] with boxes [4,4] (x0,y0,x1,y1, int64) for one part,
                             and delta.conv5, delta.fc7: [mean, std] of the Hamming fractions over
                             ordered pairs of sign(x - x_occluded).

Re-run (CI only reads the outputs):
  .venv/bin/python crates/zf-probe/tests/golden/make_golden.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
CHANNELS = [6, 16, 24, 24, 16]
FC_UNITS = 64
CLASSES = 10
INPUT = 128
SIZE, STRIDE, LABEL = 32, 16, 3


def forward(p, x):
    taps = {}
    h = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], stride=2, padding=1))
    h = F.local_response_norm(F.max_pool2d(h, 3, 2, ceil_mode=True), 5, 1e-4, 0.75, 2.0)
    h = F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], stride=2, padding=0))
    h = F.local_response_norm(F.max_pool2d(h, 3, 2, ceil_mode=True), 5, 1e-4, 0.75, 2.0)
    for name in ("conv3", "conv4", "conv5"):
        h = F.relu(F.conv2d(h, p[name + ".weight"], p[name + ".bias"], padding=1))
    taps["conv5"] = h
    h = F.max_pool2d(h, 3, 2).flatten(1)
    h = F.relu(F.linear(h, p["fc6.weight"], p["fc6.bias"]))
    h = F.relu(F.linear(h, p["fc7.weight"], p["fc7.bias"]))
    taps["fc7"] = h
    taps["prob"] = F.softmax(F.linear(h, p["fc8.weight"], p["fc8.bias"]), dim=1)
    return taps


def main():
    torch.use_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(7)
    c = CHANNELS
    shapes = {"conv1.weight": [c[0], 3, 7, 7], "conv2.weight": [c[1], c[0], 5, 5]}
    for i, name in enumerate(("conv3", "conv4", "conv5")):
        shapes[name + ".weight"] = [c[i + 2], c[i + 1], 3, 3]
    shapes.update({"fc6.weight": [FC_UNITS, c[4] * 9], "fc7.weight": [FC_UNITS, FC_UNITS], "fc8.weight": [CLASSES, FC_UNITS]})
    p = {}
    for k, s in shapes.items():
        fan_in = 1
        for d in s[1:]:
            fan_in *= d
        p[k] = torch.randn(s, generator=g) * 0.8 * (2.0 / fan_in) ** 0.5
        p[k.replace("weight", "bias")] = torch.randn(s[0], generator=g) * 0.05
    x = torch.randn(3, INPUT, INPUT, generator=g) * 1.5

    # Occlusion: the square's top-left corners at 0, STRIDE, ... up to INPUT - SIZE, row-major.
    clean = forward(p, x[None])
    m = int(clean["conv5"][0].flatten(1).max(1).values.argmax())
    offsets = list(range(0, INPUT - SIZE + 1, STRIDE))
    xs = []
    for y in offsets:
        for xx in offsets:
            o = x.clone()
            o[:, y:y + SIZE, xx:xx + SIZE] = 0.0
            xs.append(o)
    t = forward(p, torch.stack(xs))
    golden = {
        "input": x,
        "occ.map": torch.tensor([m]),
        "occ.feature_map": t["conv5"][:, m].sum((1, 2)),
        "occ.true_prob": t["prob"][:, LABEL],
        "occ.top_label": t["prob"].argmax(1),
    }

    # Correspondence: four images, one box each.
    images = torch.randn(4, 3, INPUT, INPUT, generator=g) * 1.5
    boxes = torch.tensor([[10, 20, 34, 44], [40, 40, 64, 64], [70, 10, 94, 34], [90, 90, 118, 118]])
    orig = forward(p, images)
    occ = images.clone()
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        occ[i, :, y0:y1, x0:x1] = 0.0
    changed = forward(p, occ)
    for layer in ("conv5", "fc7"):
        s = torch.sign(orig[layer] - changed[layer]).flatten(1)
        d = [(s[i] != s[j]).double().mean() for i in range(4) for j in range(4) if i != j]
        d = torch.stack(d)
        golden[f"delta.{layer}"] = torch.stack([d.mean(), d.std(unbiased=False)]).float()
    golden["images"] = images
    golden["boxes"] = boxes

    config = {"first_layer": "zf", "channels": CHANNELS, "fc_units": FC_UNITS, "classes": CLASSES, "lrn": LRN,
              "input_size": INPUT, "dropout": 0.5}
    save_file({k: v.contiguous() for k, v in p.items()}, os.path.join(HERE, "probe.weights.safetensors"),
              metadata={"format": "pt", "zfnet.config": json.dumps(config)})
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(HERE, "probe.golden.safetensors"),
              metadata={"torch": torch.__version__})
    print("map", m, "delta", golden["delta.conv5"].tolist(), golden["delta.fc7"].tolist())


if __name__ == "__main__":
    main()
