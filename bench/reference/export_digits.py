#!/usr/bin/python3
"""Writes scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; Debian's python3-sklearn) as a
folder in MNIST's layout for `bench/run pays` (MEDFORMER_PAYS_DATA=FOLDER): each image upsampled to 28x28
(bilinear, as torch.nn.functional.interpolate with align_corners=False), its 0-16 grey levels scaled to 0-255, then
split at random (seed 0), stratified by class, into 1,438 training and 359 test images (a fifth of each class); gzipped IDX files
(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...).

Usage: export_digits.py OUT_FOLDER
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def main(out):
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None]            # [N,1,8,8], 0-16
    big = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
    pixels = (big / 16.0 * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    labels = digits.target.astype(np.uint8)
    rng = np.random.default_rng(0)
    test = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test.extend(rng.permutation(members)[: round(len(members) * 0.2)])
    is_test = np.zeros(len(labels), bool)
    is_test[test] = True
    os.makedirs(out, exist_ok=True)
    for prefix, rows in (("train", ~is_test), ("t10k", is_test)):
        write_idx(os.path.join(out, f"{prefix}-images-idx3-ubyte.gz"), pixels[rows])
        write_idx(os.path.join(out, f"{prefix}-labels-idx1-ubyte.gz"), labels[rows])
    print(f"{out}: {int((~is_test).sum())} training and {int(is_test.sum())} test images, 28x28, 10 classes")


if __name__ == "__main__":
    main(sys.argv[1])
