#!/usr/bin/env python3
"""zfnet_torch.load builds, from a zfnet safetensors file alone, the network zfnet runs: on the
fixture in tests/ (saved by zfnet with imgclsmob's layer order, input scales and a 96-pixel
input; its golden numbers are zfnet's forward pass, kept so by
crates/zf-model/tests/python_loader.rs) the logits and conv5 activations agree to 1e-4 of
their scale.

Run: python3 python/test_zfnet_torch.py (needs torch and safetensors: python/setup-torch.sh).
"""
import os
import sys
import unittest

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zfnet_torch  # noqa: E402


class LoaderMatchesZfnet(unittest.TestCase):
    def test_forward_matches_zfnet(self):
        net, config = zfnet_torch.load(os.path.join(HERE, "tests/zfnet_tiny.safetensors"))
        self.assertEqual(config["order"], "imgclsmob")
        self.assertEqual(config["input_size"], 96)
        golden = load_file(os.path.join(HERE, "tests/zfnet_tiny.golden.safetensors"))
        with torch.no_grad():
            t = net.trace(golden["input"])
        for name in ("fc8", "conv5"):
            want, got = golden[name], t[name]
            scale = want.abs().max().item()
            err = (got - want).abs().max().item()
            self.assertLessEqual(err, 1e-4 * scale, f"{name}: max error {err}, scale {scale}")

    def test_a_file_without_config_is_built_from_its_shapes(self):
        net = zfnet_torch.ZFNet(zfnet_torch.config_for_width(0.125, classes=7))
        self.assertEqual(net.fc6.in_features, 32 * 36)
        self.assertEqual(net.fc8.out_features, 7)


if __name__ == "__main__":
    unittest.main()
