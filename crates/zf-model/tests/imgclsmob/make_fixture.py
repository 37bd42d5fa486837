#!/usr/bin/env python3
"""A reduced-width imgclsmob ZFNet fixture, made with pytorchcv's own model definition
(`pytorchcv.models.alexnet.AlexNet` with zfnet's kernel sizes, strides and paddings, as
`pytorchcv.models.zfnet.get_zfnet` builds it), random weights.

Widths are reduced so that the files stay small while every key name stays pytorchcv's: conv
maps [6], [16], [24, 24, 16]; the fc layers (fixed at 4096 in pytorchcv) are replaced by
Linear layers of 64 units under the same names; 10 classes; 224-pixel input.

Writes, beside this file, the three forms in which such weights are found:
  zfnet_small.pth                  torch.save(state_dict): the zip format (PyTorch >= 1.6)
  zfnet_small.legacy.pth           the same with _use_new_zipfile_serialization=False: the
                                   format of every .pth saved before PyTorch 1.6, imgclsmob's
                                   published zfnet-1727-d010ddca.pth among them
  zfnet_small.wrapped.pth          a training script's checkpoint: {"state_dict": ..., "epoch",
                                   "arch", "best_acc1", "optimizer"} with DataParallel's
                                   `module.` prefix on every key (as PyTorch's ImageNet example)
  zfnet_small.orig.safetensors     the same tensors under pytorchcv's key names
  zfnet_small.golden.safetensors   input [2,3,224,224] (raw pixels 0..255) and logits [2,10] of
                                   pytorchcv's forward on the ImageNet-normalized input

Re-run: pip install torch safetensors pytorchcv; python make_fixture.py
"""
import os

import torch
import torch.nn as nn
from pytorchcv.models.alexnet import AlexNet
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def main():
    torch.manual_seed(3)
    net = AlexNet(channels=[[6], [16], [24, 24, 16]], kernel_sizes=[[7], [5], [3, 3, 3]], strides=[[2], [2], [1, 1, 1]],
                  paddings=[[1], [0], [1, 1, 1]], use_lrn=True, num_classes=10)
    net.output.fc1.fc = nn.Linear(16 * 6 * 6, 64)
    net.output.fc2.fc = nn.Linear(64, 64)
    net.output.fc3 = nn.Linear(64, 10)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight"):
                fan_in = p[0].numel()
                p.normal_(0, 1.2 * (2.0 / fan_in) ** 0.5)
            else:
                p.normal_(0, 0.05)
    net.eval()
    x = torch.rand(2, 3, 224, 224) * 255.0
    with torch.no_grad():
        logits = net((x / 255.0 - MEAN) / STD)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(state, os.path.join(HERE, "zfnet_small.pth"))
    torch.save(state, os.path.join(HERE, "zfnet_small.legacy.pth"), _use_new_zipfile_serialization=False)
    wrapped = nn.DataParallel(net)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    torch.save({"epoch": 90, "arch": "zfnet", "state_dict": wrapped.state_dict(), "best_acc1": torch.tensor(60.21),
                "optimizer": optimizer.state_dict()}, os.path.join(HERE, "zfnet_small.wrapped.pth"))
    save_file(state, os.path.join(HERE, "zfnet_small.orig.safetensors"))
    save_file({"input": x, "logits": logits}, os.path.join(HERE, "zfnet_small.golden.safetensors"),
              metadata={"torch": torch.__version__})
    print(sorted(state), logits)


if __name__ == "__main__":
    main()
