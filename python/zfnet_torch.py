#!/usr/bin/env python3
"""ZFNet (Zeiler & Fergus 2014) in PyTorch, built from a zfnet safetensors file, and the
PyTorch side of `cargo xtask bench`.

As a library:

    from zfnet_torch import load
    net, config = load("runs/small/model.safetensors")   # honours the file's zfnet.config
    logits = net(x)   # x: [N, 3, S, S], the training set's per-pixel mean already subtracted

`load` reads the network config zfnet records in the file's metadata (`zfnet.config`: first
layer, widths, classes, LRN, layer order, input scale, per-channel input scale) and builds the
same network: conv1..conv5, fc6..fc8 under zfnet's names (the state dict keys are the
safetensors keys). Files without that metadata are built as the paper's network with the
widths read from the shapes. `ZFNet.trace(x)` returns every named activation, as `zfnet
forward` writes them.

As a script (the benchmark peer; one JSON line per measurement):

    python3 zfnet_torch.py [--threads 2] [--width 1.0] [--batch 16] [--reps 5] [--device cpu]
                           [--what forward,train,project,deconv,occlusion,captum-occlusion]

  forward, train: forward passes / SGD steps of a ZFNet of the given width (images/s)
  project:   one deconvnet projection of the strongest conv5 unit of one image (switch
             unpooling, ReLU, transposed filters; images_per_s = projections per second)
  deconv:    the walk down alone (torchvision's networks): the projection of the last conv's
             strongest unit from one forward pass's switches, recorded before the timing
  --arch alexnet|vgg11..vgg19|vgg*_bn: torchvision's network instead of ZFNet (forward,
             project and deconv of the last conv's strongest unit, occlusion, captum-occlusion)
  occlusion: the occlusion map of one image (48 px gray square, stride 8: 529 positions) in
             batches of --batch occluded images (images_per_s = occluded images per second)
  captum-occlusion: the same with Captum's `Occlusion` (the attribution of the true class's
             probability), the tool the occlusion analysis is usually run with

Needs torch, for `load` safetensors and for captum-occlusion captum (python/setup-torch.sh makes a virtual environment).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAPER = {
    "first_layer": "zf", "channels": [96, 256, 384, 384, 256], "fc_units": 4096, "classes": 1000,
    "lrn": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}, "input_size": 224, "dropout": 0.5,
    "input_scale": 1.0, "order": "paper", "input_channel_scale": None,
}
# conv1 / conv2 (kernel, stride, padding) for each first layer; conv3-5 are 3x3 stride 1 pad 1.
FIRST_LAYERS = {"zf": ((7, 2, 1), (5, 2, 0)), "alexnet": ((11, 4, 2), (5, 1, 2))}


def config_for_width(width=1.0, classes=1000):
    """The paper's network with every width multiplied by `width` (as ZfConfig::with_width)."""
    c = dict(PAPER)
    c["channels"] = [max(1, round(n * width)) for n in PAPER["channels"]]
    c["fc_units"] = max(1, round(PAPER["fc_units"] * width))
    c["classes"] = classes
    return c


def pool_out(n, ceil):
    """3x3 stride-2 max pooling's output side, as F.max_pool2d computes it."""
    out = -(-(n - 3) // 2) + 1 if ceil else (n - 3) // 2 + 1
    if ceil and (out - 1) * 2 >= n:
        out -= 1
    return out


class ZFNet(nn.Module):
    """ZFNet as zfnet's config describes it; parameters named as zfnet's safetensors keys."""

    def __init__(self, config=None):
        super().__init__()
        c = dict(PAPER, **(config or {}))
        self.config = c
        (k1, s1, p1), (k2, s2, p2) = FIRST_LAYERS[c["first_layer"]]
        ch = c["channels"]
        self.geometry = [(s1, p1), (s2, p2), (1, 1), (1, 1), (1, 1)]
        self.conv1 = nn.Conv2d(3, ch[0], k1, s1, p1)
        self.conv2 = nn.Conv2d(ch[0], ch[1], k2, s2, p2)
        self.conv3 = nn.Conv2d(ch[1], ch[2], 3, 1, 1)
        self.conv4 = nn.Conv2d(ch[2], ch[3], 3, 1, 1)
        self.conv5 = nn.Conv2d(ch[3], ch[4], 3, 1, 1)
        side = c["input_size"]
        side = (side + 2 * p1 - k1) // s1 + 1
        side = pool_out(side, True)
        side = (side + 2 * p2 - k2) // s2 + 1
        side = pool_out(side, True)
        side = pool_out(side, c["order"] == "imgclsmob")
        self.fc6 = nn.Linear(ch[4] * side * side, c["fc_units"])
        self.fc7 = nn.Linear(c["fc_units"], c["fc_units"])
        self.fc8 = nn.Linear(c["fc_units"], c["classes"])
        lrn = c["lrn"]
        self.lrn = nn.LocalResponseNorm(lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"]) if lrn else nn.Identity()
        self.drop = nn.Dropout(c["dropout"])
        scale = torch.full((1, 3, 1, 1), float(c["input_scale"]))
        if c.get("input_channel_scale"):
            scale = scale * torch.tensor(c["input_channel_scale"], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("input_scale", scale, persistent=False)

    def trace(self, x):
        """Every named activation, in forward order (zfnet's tap points)."""
        t = {}
        x = x * self.input_scale
        imgclsmob = self.config["order"] == "imgclsmob"
        for i, conv in ((1, self.conv1), (2, self.conv2)):
            x = t[f"conv{i}"] = F.relu(conv(x))
            if imgclsmob:  # conv -> ReLU -> LRN -> pool
                x = t[f"norm{i}"] = self.lrn(x)
                x = t[f"pool{i}"] = F.max_pool2d(x, 3, 2, ceil_mode=True)
            else:  # conv -> ReLU -> pool -> LRN (the paper's Fig. 3)
                x = t[f"pool{i}"] = F.max_pool2d(x, 3, 2, ceil_mode=True)
                x = t[f"norm{i}"] = self.lrn(x)
        x = t["conv3"] = F.relu(self.conv3(x))
        x = t["conv4"] = F.relu(self.conv4(x))
        x = t["conv5"] = F.relu(self.conv5(x))
        x = t["pool5"] = F.max_pool2d(x, 3, 2, ceil_mode=imgclsmob)
        x = t["fc6"] = self.drop(F.relu(self.fc6(x.flatten(1))))
        x = t["fc7"] = self.drop(F.relu(self.fc7(x)))
        t["fc8"] = self.fc8(x)
        t["prob"] = F.softmax(t["fc8"], 1)
        return t

    def forward(self, x):
        return self.trace(x)["fc8"]


def load(path):
    """(network, config) from a zfnet safetensors file; see the module docs."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    state = load_file(path)
    if "zfnet.config" in meta:
        config = json.loads(meta["zfnet.config"])
    else:
        k = state["conv1.weight"].shape[-1]
        config = dict(PAPER, first_layer={7: "zf", 11: "alexnet"}[k],
                      channels=[state[f"conv{i}.weight"].shape[0] for i in range(1, 6)],
                      fc_units=state["fc6.weight"].shape[0], classes=state["fc8.weight"].shape[0])
    net = ZFNet(config)
    net.load_state_dict(state)
    return net.eval(), config


def project_conv5(net, x):
    """The deconvnet projection of the strongest conv5 activation of `x` (paper's network)."""
    h = F.relu(net.conv1(x))
    size1 = h.shape[-2:]
    h, sw1 = F.max_pool2d(h, 3, 2, ceil_mode=True, return_indices=True)
    h = F.relu(net.conv2(net.lrn(h)))
    size2 = h.shape[-2:]
    h, sw2 = F.max_pool2d(h, 3, 2, ceil_mode=True, return_indices=True)
    a = F.relu(net.conv5(F.relu(net.conv4(F.relu(net.conv3(net.lrn(h)))))))
    keep = torch.zeros_like(a).flatten()
    i = int(a.flatten().argmax())
    keep[i] = a.flatten()[i]
    h = keep.view_as(a)
    for conv in (net.conv5, net.conv4, net.conv3):  # LRN passes through unchanged
        h = F.conv_transpose2d(F.relu(h), conv.weight, stride=1, padding=1)
    h = F.max_unpool2d(h, sw2, 3, 2, output_size=size2)
    h = F.conv_transpose2d(F.relu(h), net.conv2.weight, stride=2)
    h = F.max_unpool2d(h, sw1, 3, 2, output_size=size1)
    return F.conv_transpose2d(F.relu(h), net.conv1.weight, stride=2, padding=1, output_padding=1)


def last_conv_switches(net, x):
    """The forward pass of a torchvision AlexNet or VGG (`net.features`) to its last conv layer
    (with that layer's ReLU and batch norm), keeping each pool's switches and input size: the
    record the deconvnet walks down through (`walk_down`)."""
    feats = list(net.features)
    last = max(i for i, m in enumerate(feats) if isinstance(m, nn.Conv2d))
    h, sizes, switches = x, {}, {}
    for i, m in enumerate(feats):
        if i > last and not isinstance(m, (nn.BatchNorm2d, nn.ReLU)):
            break
        sizes[i] = h.shape[-2:]
        if isinstance(m, nn.MaxPool2d):
            h, switches[i] = F.max_pool2d(h, m.kernel_size, m.stride, ceil_mode=m.ceil_mode, return_indices=True)
        else:
            h = m(h)
    return h, (feats, last, sizes, switches)


def walk_down(h, record):
    """The deconvnet projection of the strongest unit of `h` (the last conv layer's activation)
    down through switch unpooling, ReLU and the transposed filters (a batch norm folded into its
    conv's filters), from `last_conv_switches`'s record."""
    feats, last, sizes, switches = record
    keep = torch.zeros_like(h).flatten()
    i = int(h.flatten().argmax())
    keep[i] = h.flatten()[i]
    h = keep.view_as(h)
    for i in range(last, -1, -1):
        m = feats[i]
        if isinstance(m, nn.Conv2d):
            w = m.weight
            bn = feats[i + 1] if isinstance(feats[i + 1], nn.BatchNorm2d) else None
            if bn is not None:
                w = w * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)
            s, p, k = m.stride[0], m.padding[0], m.kernel_size[0]
            op = sizes[i][-1] - ((h.shape[-1] - 1) * s - 2 * p + k)
            h = F.conv_transpose2d(F.relu(h), w, stride=s, padding=p, output_padding=op)
        elif isinstance(m, nn.MaxPool2d):
            h = F.max_unpool2d(h, switches[i], m.kernel_size, m.stride, output_size=sizes[i])
    return h


def project_last_conv(net, x):
    """The deconvnet projection of the strongest unit of the last conv layer of a torchvision
    AlexNet or VGG: the forward pass with the pools' switches, then the walk down."""
    return walk_down(*last_conv_switches(net, x))


def occlusion_map(net, x, label, size=48, stride=8, batch=16):
    """Probability of `label` with a gray (zero, after the mean) square at each position."""
    side = x.shape[-1]
    at = [(i, j) for i in range(0, side - size + 1, stride) for j in range(0, side - size + 1, stride)]
    probs = []
    for b in range(0, len(at), batch):
        chunk = at[b:b + batch]
        xs = x.repeat(len(chunk), 1, 1, 1)
        for k, (i, j) in enumerate(chunk):
            xs[k, :, i:i + size, j:j + size] = 0.0
        probs.append(F.softmax(net(xs), 1)[:, label])
    return torch.cat(probs), len(at)


def median_time(fn, reps, sync=lambda: None):
    # Warm-up as zfnet's median_time does it: at least one call, and calls for half a second
    # (at most 20), so that a fast case (one image) is timed warm on both sides. `sync` waits
    # for a GPU's queued work (zfnet bench synchronizes its device the same way).
    t0, calls = time.perf_counter(), 0
    while calls == 0 or (time.perf_counter() - t0 < 0.5 and calls < 20):
        fn()
        sync()
        calls += 1
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description="ZFNet timings in PyTorch (the peer of `zfnet bench`)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--what", default="forward,train")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the peer of zfnet bench --device)")
    ap.add_argument("--arch", default="zfnet",
                    help="zfnet, or torchvision's alexnet, vgg11..vgg19, vgg*_bn (random weights, 224 px)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.arch == "zfnet":
        net = ZFNet(config_for_width(a.width))
    else:
        import torchvision
        net = getattr(torchvision.models, a.arch)(weights=None).eval()
    device = torch.device(a.device)
    net = net.to(device)
    x = (torch.randn(a.batch, 3, 224, 224) * 50).to(device)
    y = torch.randint(0, 1000, (a.batch,)).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def timed(fn, reps):
        return median_time(fn, reps, sync)

    def report(bench, seconds, n, batch=a.batch, impl="pytorch " + torch.__version__, **extra):
        print(json.dumps({"bench": bench, "impl": impl, "arch": a.arch, "device": a.device, "threads": a.threads,
                          "width": a.width, "batch": batch, **extra, "median_s": round(seconds, 5),
                          "images_per_s": round(n / seconds, 2)}), flush=True)

    for what in a.what.split(","):
        if what == "forward":
            net.eval()
            with torch.no_grad():
                report("forward", timed(lambda: net(x), a.reps), a.batch)
        elif what == "train":
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)

            def step():
                opt.zero_grad()
                F.cross_entropy(net(x), y).backward()
                opt.step()

            report("train", timed(step, a.reps), a.batch)
        elif what == "project":
            net.eval()
            with torch.no_grad():
                project = project_conv5 if a.arch == "zfnet" else project_last_conv
                report("project", timed(lambda: project(net, x[:1]), a.reps), 1, batch=1)
        elif what == "deconv":
            if a.arch == "zfnet":
                ap.error("--what deconv times a torchvision --arch (zfnet's projection is `project`)")
            net.eval()
            with torch.no_grad():
                h, record = last_conv_switches(net, x[:1])
                report("deconv", timed(lambda: walk_down(h, record), a.reps), 1, batch=1)
        elif what == "occlusion":
            net.eval()
            with torch.no_grad():
                n = occlusion_map(net, x[:1], 0, batch=a.batch)[1]
                t = timed(lambda: occlusion_map(net, x[:1], 0, batch=a.batch), max(1, a.reps // 3))
            report("occlusion", t, n, positions=n)
        elif what == "captum-occlusion":
            # Captum's Occlusion on the same network and square: the attribution of the true
            # class's probability, `--batch` occluded images per forward pass.
            import captum
            from captum.attr import Occlusion
            net.eval()
            occ = Occlusion(lambda inp: F.softmax(net(inp), 1))
            side = x.shape[-1]
            n = len(range(0, side - 48 + 1, 8)) ** 2

            def attribute():
                with torch.no_grad():
                    occ.attribute(x[:1], sliding_window_shapes=(3, 48, 48), strides=(3, 8, 8), baselines=0.0,
                                  target=0, perturbations_per_eval=a.batch)

            t = timed(attribute, max(1, a.reps // 3))
            report("occlusion", t, n, positions=n, impl="captum " + captum.__version__)
        else:
            ap.error(f"unknown --what {what}: expected forward, train, project, deconv, occlusion or captum-occlusion")


if __name__ == "__main__":
    main()
