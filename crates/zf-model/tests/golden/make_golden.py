#!/usr/bin/env python3
"""Golden fixtures for zf-model's tests, made by an independent implementation of ZFNet in
PyTorch: F.conv2d, F.relu, F.max_pool2d(ceil_mode=True, return_indices=True),
F.local_response_norm, F.linear, F.softmax, F.cross_entropy and autograd.

For each case it writes, beside this file:
  <case>.weights.safetensors  the weights under zfnet's keys (conv1.weight ... fc8.bias, PyTorch
                              layouts), with the network config as JSON in the metadata
                              (key "zfnet.config", zf-model's serde format)
  <case>.golden.safetensors   input [N,3,S,S], labels [N] (int64), every tap (conv1, pool1,
                              norm1, conv2, ..., pool5, fc6, fc7, fc8, prob; conv/fc after ReLU),
                              the switches of pool1, pool2, pool5 ("<pool>.switches", int64 flat
                              indices into each H*W plane), the mean cross-entropy "loss", and
                              its gradient with respect to every parameter ("grad.<key>") and to
                              the input ("grad.input").

Re-run (CI only reads the outputs):
  python3 -m venv .venv && .venv/bin/pip install torch safetensors
  .venv/bin/python crates/zf-model/tests/golden/make_golden.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
FIRST = {"zf": ((7, 2, 1), (5, 2, 0)), "alexnet": ((11, 4, 2), (5, 1, 2))}
# Reduced widths and a 128x128 input keep the files small; at 128 the ZF layers give
# conv1 62 -> pool1 31 (ceil: the last window hangs over) -> conv2 14 -> pool2 7 (ceil) -> pool5 3.
CASES = {
    "zf": dict(first_layer="zf", lrn=True),
    "alexnet": dict(first_layer="alexnet", lrn=True),
    "zf_nolrn": dict(first_layer="zf", lrn=False),
}
CHANNELS = [6, 16, 24, 24, 16]
FC_UNITS = 64
CLASSES = 10
INPUT = 128
BATCH = 2


def pool(x, ceil_mode):
    return F.max_pool2d(x, 3, 2, ceil_mode=ceil_mode, return_indices=True)


def lrn(x):
    return F.local_response_norm(x, LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"])


def forward(p, x, first, use_lrn):
    (k1, s1, p1), (k2, s2, p2) = FIRST[first]
    taps, sw = {}, {}
    h = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], stride=s1, padding=p1)); taps["conv1"] = h
    h, sw["pool1"] = pool(h, True); taps["pool1"] = h
    if use_lrn:
        h = lrn(h); taps["norm1"] = h
    h = F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], stride=s2, padding=p2)); taps["conv2"] = h
    h, sw["pool2"] = pool(h, True); taps["pool2"] = h
    if use_lrn:
        h = lrn(h); taps["norm2"] = h
    for name in ("conv3", "conv4", "conv5"):
        h = F.relu(F.conv2d(h, p[name + ".weight"], p[name + ".bias"], stride=1, padding=1)); taps[name] = h
    h, sw["pool5"] = pool(h, False); taps["pool5"] = h
    h = h.flatten(1)
    h = F.relu(F.linear(h, p["fc6.weight"], p["fc6.bias"])); taps["fc6"] = h
    h = F.relu(F.linear(h, p["fc7.weight"], p["fc7.bias"])); taps["fc7"] = h
    h = F.linear(h, p["fc8.weight"], p["fc8.bias"]); taps["fc8"] = h
    taps["prob"] = F.softmax(h, dim=1)
    return taps, sw


def shapes(first):
    (k1, _, _), (k2, _, _) = FIRST[first]
    c = CHANNELS
    x = torch.zeros(1, 3, INPUT, INPUT)
    p = {"conv1.weight": torch.zeros(c[0], 3, k1, k1), "conv1.bias": torch.zeros(c[0]),
         "conv2.weight": torch.zeros(c[1], c[0], k2, k2), "conv2.bias": torch.zeros(c[1])}
    for i, name in enumerate(("conv3", "conv4", "conv5")):
        p[name + ".weight"] = torch.zeros(c[i + 2], c[i + 1], 3, 3); p[name + ".bias"] = torch.zeros(c[i + 2])
    # fc6's input size from a dry run of the conv part.
    (ks1, ss1, ps1), (ks2, ss2, ps2) = FIRST[first]
    h = F.conv2d(x, p["conv1.weight"], stride=ss1, padding=ps1); h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    h = F.conv2d(h, p["conv2.weight"], stride=ss2, padding=ps2); h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    for name in ("conv3", "conv4", "conv5"):
        h = F.conv2d(h, p[name + ".weight"], padding=1)
    n = F.max_pool2d(h, 3, 2).numel()
    out = {k: list(v.shape) for k, v in p.items()}
    out.update({"fc6.weight": [FC_UNITS, n], "fc6.bias": [FC_UNITS], "fc7.weight": [FC_UNITS, FC_UNITS],
                "fc7.bias": [FC_UNITS], "fc8.weight": [CLASSES, FC_UNITS], "fc8.bias": [CLASSES]})
    return out


def make(case, first_layer, lrn, seed):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for key, shape in shapes(first_layer).items():
        if key.endswith(".weight"):
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            # He's scale times 0.6: activations shrink gently, so the logits stay O(1)
            # and the softmax is not saturated.
            params[key] = torch.randn(shape, generator=g) * 0.6 * (2.0 / fan_in) ** 0.5
        else:
            params[key] = torch.randn(shape, generator=g) * 0.1
    x = torch.randn(BATCH, 3, INPUT, INPUT, generator=g) * 50.0
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    xi = x.clone().requires_grad_(True)
    taps, sw = forward(leaves, xi, first_layer, lrn)
    loss = F.cross_entropy(taps["fc8"], labels)
    loss.backward()

    config = {"first_layer": first_layer, "channels": CHANNELS, "fc_units": FC_UNITS, "classes": CLASSES,
              "lrn": LRN if lrn else None, "input_size": INPUT, "dropout": 0.5}
    save_file({k: v.contiguous() for k, v in params.items()}, os.path.join(HERE, f"{case}.weights.safetensors"),
              metadata={"format": "pt", "zfnet.config": json.dumps(config)})
    golden = {"input": x, "labels": labels, "loss": loss.detach().reshape(1), "grad.input": xi.grad}
    golden.update({k: v.detach() for k, v in taps.items()})
    golden.update({f"{k}.switches": v for k, v in sw.items()})
    golden.update({f"grad.{k}": v.grad for k, v in leaves.items()})
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(HERE, f"{case}.golden.safetensors"),
              metadata={"torch": torch.__version__})
    print(case, "loss", float(loss.detach()), "files written")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    for i, (case, kw) in enumerate(CASES.items()):
        make(case, seed=1000 + i, **kw)
