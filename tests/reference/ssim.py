#!/usr/bin/python3
"""Reference values for heads/Ssim (tests/heads/SsimTests.cs keeps them): computed once with Debian's scikit-image
0.19 (python3-skimage), skimage.metrics.structural_similarity(x, y, data_range=R, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False[, channel_axis=0]), on the test's images rebuilt value for value: smooth waves x and the
same plus a fast ripple y, each value rounded to float32 as the C# test stores it, then widened to float64 (exact)
so that scikit-image computes in float64 (given float32 it computes in float32, good to 7 digits only).

Usage: /usr/bin/python3 tests/reference/ssim.py   (prints one JSON object: case name -> SSIM)
"""
import json
import math

import numpy as np
from skimage.metrics import structural_similarity


def waves(shape, channel):
    """SsimTests.Waves: x, y of `shape` (2D or 3D), C order; math.sin/cos as .NET's Math.Sin/Cos (both glibc's)."""
    x = np.empty(shape, dtype=np.float32)
    y = np.empty(shape, dtype=np.float32)
    for index in np.ndindex(*shape):
        i, j = float(index[0]), float(index[1])
        k = float(index[2]) if len(shape) == 3 else 0.0
        value = 0.5 + 0.4 * math.sin(0.37 * i + 0.11 * j + 0.05 * k + channel) * math.cos(0.23 * j - 0.17 * k)
        x[index] = value
        y[index] = value + 0.2 * math.sin(0.9 * i * j + 0.3 * k + 2 * channel)
    return x.astype(np.float64), y.astype(np.float64)


def ssim(shape, channels, data_range):
    pairs = [waves(shape, c) for c in range(channels)]
    x = np.stack([p[0] for p in pairs])
    y = np.stack([p[1] for p in pairs])
    options = dict(data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if channels == 1:
        return float(structural_similarity(x[0], y[0], **options))
    return float(structural_similarity(x, y, channel_axis=0, **options))


print(json.dumps({
    "24x20_1ch_range1": ssim((24, 20), 1, 1.0),
    "16x18_3ch_range2": ssim((16, 18), 3, 2.0),
    "12x14x13_1ch_range1": ssim((12, 14, 13), 1, 1.0),
}, indent=1))
