#!/usr/bin/python3
"""Reference values for Resize and Affine (tests/datasets/TransformResampleTests.cs keeps them): Debian's PyTorch 1.13
(/usr/bin/python3), in float64.

- resizes: F.interpolate (bilinear and trilinear with align_corners=False, nearest-exact) on arange images;
- affine: F.grid_sample(align_corners=False) on a grid built point by point from MONAI's map, output to input pixel
  indices, q = c + R·Sh·S·(p − c) + t, with c = (n − 1)/2 per axis, R the rotations of the planes (0,1) [, (0,2),
  (1,2)] composed in that order (R[a,a] = R[b,b] = cos, R[a,b] = −sin, R[b,a] = sin), Sh the shear's off-diagonal
  coefficients row-major, S the per-axis scale; then normalized as align_corners=False does: (2q + 1)/n − 1. It does
  not use affine_grid, so it checks our θ as well as our sampling.

Usage: /usr/bin/python3 tests/reference/resample.py   (prints one JSON object: case name -> values, C order)
"""
import itertools
import json
import math

import torch
import torch.nn.functional as F


def flat(t):
    return [float(v) for v in t.flatten().tolist()]


def matmul(x, y):
    n = len(x)
    return [[sum(x[i][l] * y[l][j] for l in range(n)) for j in range(n)] for i in range(n)]


def affine_map(shape, rotate, scale, translate, shear):
    axes = len(shape)
    identity = lambda: [[1.0 if i == j else 0.0 for j in range(axes)] for i in range(axes)]
    planes = [(0, 1)] if axes == 2 else [(0, 1), (0, 2), (1, 2)]
    m = identity()
    for (a, b), angle in zip(planes, rotate):
        r = identity()
        r[a][a], r[a][b], r[b][a], r[b][b] = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)
        m = matmul(m, r)
    sh = identity()
    coefficients = iter(shear)
    for a in range(axes):
        for b in range(axes):
            if a != b:
                sh[a][b] = next(coefficients)
    m = matmul(m, sh)
    m = [[m[a][b] * scale[b] for b in range(axes)] for a in range(axes)]
    c = [(n - 1) / 2 for n in shape]

    def q(p):
        return [c[a] + sum(m[a][b] * (p[b] - c[b]) for b in range(axes)) + translate[a] for a in range(axes)]
    return q


def warp(image, rotate, scale, translate, shear, padding):
    shape = list(image.shape)
    q = affine_map(shape, rotate, scale, translate, shear)
    grid = torch.empty(*shape, len(shape), dtype=torch.float64)
    for p in itertools.product(*[range(n) for n in shape]):
        point = q(p)
        # grid_sample's last axis is (x, y[, z]): the fastest axis first.
        grid[p] = torch.tensor([(2 * point[a] + 1) / shape[a] - 1 for a in reversed(range(len(shape)))], dtype=torch.float64)
    out = F.grid_sample(image[None, None], grid[None], mode="bilinear", padding_mode=padding, align_corners=False)
    return flat(out[0, 0])


image2 = torch.arange(20, dtype=torch.float64).view(4, 5)
volume = torch.arange(60, dtype=torch.float64).view(3, 4, 5)
print(json.dumps({
    "resize_bilinear_2x3_to_3x5": flat(F.interpolate(torch.arange(6, dtype=torch.float64).view(1, 1, 2, 3), size=(3, 5), mode="bilinear", align_corners=False)),
    "resize_nearest_exact_2x3_to_4x5": flat(F.interpolate(torch.arange(6, dtype=torch.float64).view(1, 1, 2, 3), size=(4, 5), mode="nearest-exact")),
    "resize_trilinear_2x2x3_to_3x3x4": flat(F.interpolate(torch.arange(12, dtype=torch.float64).view(1, 1, 2, 2, 3), size=(3, 3, 4), mode="trilinear", align_corners=False)),
    "affine2d_zeros": warp(image2, [0.3], [1.1, 0.9], [0.5, -0.7], [0.1, -0.05], "zeros"),
    "affine2d_reflection": warp(image2, [0.3], [1.1, 0.9], [0.5, -0.7], [0.1, -0.05], "reflection"),
    "affine3d_zeros": warp(volume, [0.2, -0.1, 0.3], [1.0, 1.2, 0.9], [0.3, 0.0, -0.4], [0.0] * 6, "zeros"),
}))
