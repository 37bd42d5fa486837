#!/usr/bin/env python3
"""Golden fixtures for torchvision's AlexNet and VGG-11 with batch norm, made with torchvision's
own model definitions (`torchvision.models.AlexNet`, `torchvision.models.vgg.VGG` over
`make_layers(..., batch_norm=True)`) and seeded random weights.

Widths are reduced so that the files stay small while every key and module index stays
torchvision's: AlexNet's convs 8, 16, 24, 16, 16 and fc 32, 32 (its modules replaced in place);
VGG-11's configuration "A" with widths 8, 16, 16, 16, 24, 24, 24, 24 and fc 32, 32; 10 classes.
AlexNet at 96 pixels (its adaptive pool then spreads 2x2 to 6x6), VGG-11 at 64 (2x2 to 7x7).
Batch norms get random running statistics and affine parameters, so that folding them matters.

Writes, beside this file, for each of alexnet and vgg11_bn:
  <arch>.pth              torch.save(state_dict): the zip format (PyTorch >= 1.6)
  <arch>.legacy.pth       the same with _use_new_zipfile_serialization=False
  <arch>.safetensors      the state dict as safetensors (batch norms unfolded, as PyTorch
                          writes it; num_batches_tracked included)
  <arch>.golden.safetensors
    input                 [2,3,S,S] raw pixels 0..255; the model is run on
                          (input / 255 - mean) / std (torchvision's Normalize, ImageNet's)
    act.<key>             every layer's output, under the module key zfnet names the layer by:
                          a conv's (or linear's) output after its batch norm and ReLU (captured
                          at the ReLU), pools, avgpool, and "logits"
    switch.<key>          int64 switches of every max pool (F.max_pool2d(return_indices=True)
                          on the pool's input)
    units.<key>, proj.<key>
                          deconvnet projections of conv units [K,4] (image, channel, y, x):
                          [K,3,S,S], by an independent deconvnet written here: from the kept
                          activation down, F.relu, F.conv_transpose2d with the conv's weights
                          (batch norm folded in: w * gamma / sqrt(var + eps); no bias;
                          output_padding restoring the input size), F.max_unpool2d with the
                          recorded switches; batch norm and ReLU modules otherwise skipped
    occ.prob, occ.attr    occlusion of image 0 for class occ.label: the class's probability with
                          a zero (mean-gray) square of side occ.size at stride occ.stride, row-major
                          over positions, and captum's Occlusion attribution [3,S,S] for the same
                          squares (sliding_window_shapes (3, size, size), strides (3, stride,
                          stride), baselines 0 on the normalized input, softmax output)

Re-run: pip install torch torchvision captum safetensors; python make_fixture.py
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import Occlusion
from safetensors.torch import save_file
from torchvision.models import AlexNet
from torchvision.models.vgg import VGG, make_layers

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
EPS = 1e-5


def alexnet():
    net = AlexNet(num_classes=10)
    f, c = net.features, net.classifier
    f[0] = nn.Conv2d(3, 8, 11, 4, 2)
    f[3] = nn.Conv2d(8, 16, 5, padding=2)
    f[6] = nn.Conv2d(16, 24, 3, padding=1)
    f[8] = nn.Conv2d(24, 16, 3, padding=1)
    f[10] = nn.Conv2d(16, 16, 3, padding=1)
    c[1] = nn.Linear(16 * 6 * 6, 32)
    c[4] = nn.Linear(32, 32)
    c[6] = nn.Linear(32, 10)
    return net, 96, ["features.3", "features.10"]


def vgg11_bn():
    cfg = [8, "M", 16, "M", 16, 16, "M", 24, 24, "M", 24, 24, "M"]
    net = VGG(make_layers(cfg, batch_norm=True), num_classes=10, init_weights=False)
    c = net.classifier
    c[0] = nn.Linear(24 * 7 * 7, 32)
    c[3] = nn.Linear(32, 32)
    c[6] = nn.Linear(32, 10)
    return net, 64, ["features.8", "features.25"]


def randomize(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # He's scale for the convs; the linear layers smaller, so that the logits stay
                # in a range where the softmax (occlusion) is not saturated.
                fan_in = m.weight[0].numel()
                gain = 2.0 if isinstance(m, nn.Conv2d) else 1.0
                m.weight.normal_(0, (gain / fan_in) ** 0.5)
                m.bias.normal_(0, 0.05)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)


def key_of(net):
    """Module -> the key zfnet names its output by: a ReLU or batch norm after a conv or linear
    layer gives that layer's key (zfnet folds them into it)."""
    keys = {}
    for container in ["features", "classifier"]:
        owner = None
        for i, m in enumerate(getattr(net, container)):
            k = f"{container}.{i}"
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                owner = k
                keys[m] = k
            elif isinstance(m, (nn.ReLU, nn.BatchNorm2d)) and owner is not None:
                keys[m] = owner
            else:
                owner = None
                keys[m] = k
    keys[net.avgpool] = "avgpool"
    return keys


def folded(conv, bn):
    if bn is None:
        return conv.weight
    scale = bn.weight / torch.sqrt(bn.running_var + EPS)
    return conv.weight * scale.view(-1, 1, 1, 1)


def trace(net, xn):
    keys = key_of(net)
    acts, switches, sizes = {}, {}, {}

    def hook(m, inp, out):
        acts[keys[m]] = out.detach().clone()
        if isinstance(m, nn.MaxPool2d):
            _, idx = F.max_pool2d(inp[0], m.kernel_size, m.stride, ceil_mode=m.ceil_mode, return_indices=True)
            switches[keys[m]] = idx
            sizes[keys[m]] = inp[0].shape[-2:]
        if isinstance(m, nn.Conv2d):
            sizes[keys[m]] = inp[0].shape[-2:]

    handles = [m.register_forward_hook(hook) for m in keys if not isinstance(m, nn.Dropout)]
    with torch.no_grad():
        logits = net(xn)
    for h in handles:
        h.remove()
    return acts, switches, sizes, logits


def project(net, acts, switches, sizes, layer, units):
    mods = list(net.features)
    top = int(layer.split(".")[1])
    a = acts[layer]
    h = torch.zeros(len(units), *a.shape[1:])
    for k, (img, c, y, x) in enumerate(units):
        h[k, c, y, x] = a[img, c, y, x]
    images = torch.tensor([u[0] for u in units])
    for i in range(top, -1, -1):
        m = mods[i]
        if isinstance(m, nn.Conv2d):
            bn = mods[i + 1] if isinstance(mods[i + 1], nn.BatchNorm2d) else None
            n = sizes[f"features.{i}"]
            s, p, k = m.stride[0], m.padding[0], m.kernel_size[0]
            op = n[-1] - ((h.shape[-1] - 1) * s - 2 * p + k)
            h = F.conv_transpose2d(F.relu(h), folded(m, bn), stride=s, padding=p, output_padding=op)
        elif isinstance(m, nn.MaxPool2d):
            key = f"features.{i}"
            h = F.max_unpool2d(h, switches[key][images], m.kernel_size, m.stride, output_size=sizes[key])
    return h


def make(name, build, seed):
    torch.manual_seed(seed)
    net, size, layers = build()
    randomize(net)
    net.eval()
    x = torch.rand(2, 3, size, size) * 255.0
    xn = (x / 255.0 - MEAN) / STD
    acts, switches, sizes, logits = trace(net, xn)
    golden = {"input": x, "logits": logits}
    golden.update({f"act.{k}": v for k, v in acts.items()})
    golden.update({f"switch.{k}": v for k, v in switches.items()})
    with torch.no_grad():
        for layer in layers:
            a = acts[layer]
            units = []
            for img in range(2):
                for c in (0, a.shape[1] // 2):
                    flat = int(a[img, c].flatten().argmax())
                    units.append((img, c, flat // a.shape[-1], flat % a.shape[-1]))
            golden[f"units.{layer}"] = torch.tensor(units, dtype=torch.int64)
            golden[f"proj.{layer}"] = project(net, acts, switches, sizes, layer, units)
    # Occlusion of image 0 for its top class.
    occ_size, occ_stride = 16, 8
    label = int(logits[0].argmax())
    model = nn.Sequential(net, nn.Softmax(dim=1))
    with torch.no_grad():
        probs = []
        for y in range(0, size - occ_size + 1, occ_stride):
            for x0 in range(0, size - occ_size + 1, occ_stride):
                o = xn[:1].clone()
                o[:, :, y:y + occ_size, x0:x0 + occ_size] = 0.0
                probs.append(float(model(o)[0, label]))
        attr = Occlusion(model).attribute(xn[:1], sliding_window_shapes=(3, occ_size, occ_size),
                                          strides=(3, occ_stride, occ_stride), baselines=0, target=label)
    golden["occ.prob"] = torch.tensor(probs)
    golden["occ.attr"] = attr[0].detach()
    golden["occ.label"] = torch.tensor([label], dtype=torch.int64)
    golden["occ.size"] = torch.tensor([occ_size, occ_stride], dtype=torch.int64)
    golden = {k: v.contiguous() for k, v in golden.items()}
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(state, os.path.join(HERE, f"{name}.pth"))
    torch.save(state, os.path.join(HERE, f"{name}.legacy.pth"), _use_new_zipfile_serialization=False)
    save_file(state, os.path.join(HERE, f"{name}.safetensors"))
    save_file(golden, os.path.join(HERE, f"{name}.golden.safetensors"), metadata={"torch": torch.__version__})
    print(name, sorted(acts), logits[0])


if __name__ == "__main__":
    make("alexnet", alexnet, 11)
    make("vgg11_bn", vgg11_bn, 12)
