#!/usr/bin/env python3
"""Copies the public-domain / CC0 sample photographs that scikit-image and matplotlib ship in
their wheels into this folder as JPEGs (quality 90). See SOURCES.md for each image's origin.

  python3 -m venv .venv && .venv/bin/pip install scikit-image matplotlib pillow
  .venv/bin/python data/photos/make_photos.py
"""
import os

import matplotlib
import skimage
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
MPL = os.path.join(matplotlib.get_data_path(), "sample_data")
PHOTOS = {
    "astronaut.jpg": os.path.join(SK, "astronaut.png"),
    "chelsea.jpg": os.path.join(SK, "chelsea.png"),
    "coffee.jpg": os.path.join(SK, "coffee.png"),
    "rocket.jpg": os.path.join(SK, "rocket.jpg"),
    "camera.jpg": os.path.join(SK, "camera.png"),
    "grace_hopper.jpg": os.path.join(MPL, "grace_hopper.jpg"),
}
for name, src in PHOTOS.items():
    img = Image.open(src)
    img = img.convert("L" if img.mode in ("L", "I;16") else "RGB")
    img.save(os.path.join(HERE, name), quality=90)
    print(name, img.size, img.mode)
