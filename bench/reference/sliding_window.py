"""PyTorch 1.13 twin of heads/SlidingWindow.cs: MONAI's sliding_window_inference written out (MONAI is not in
Debian), and the side of bench/run heads that times it on a 128^3 volume with the Medformer twin's segmentation head.

  sliding_window.py --parity             prints the blended output of a fixed, position-dependent predictor (tests)
  sliding_window.py --threads N --config config.json --size 128 --roi 32 --batch 4 --classes 2   (bench)
"""
import argparse
import itertools
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from medformer import Medformer, fourier_grid_features  # noqa: E402


def importance_map(roi, mode, sigma_scale):
    if mode == "constant":
        return torch.ones(roi)
    result = None
    for i, n in enumerate(roi):
        sigma = n * sigma_scale
        x = torch.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=torch.float)
        x = torch.exp(x ** 2 / (-2 * sigma ** 2))
        result = x if i == 0 else result.unsqueeze(-1) * x[(None,) * i]
    return torch.clamp(result, min=max(result.min().item(), 1e-3))


def scan_starts(image, roi, overlap):
    starts = []
    for size, r in zip(image, roi):
        interval = r if r == size else max(int(r * (1 - overlap)), 1)
        count = next(d for d in range(int(math.ceil(size / interval)) + 1) if d * interval + r >= size) + 1
        starts.append([i * interval - max(i * interval + r - size, 0) for i in range(count)])
    return list(itertools.product(*starts))


def sliding_window_inference(inputs, roi, sw_batch_size, predictor, overlap=0.25, mode="gaussian", sigma_scale=0.125, cval=0.0):
    axes = inputs.dim() - 2
    original = list(inputs.shape[2:])
    roi = [r if r > 0 else s for r, s in zip(roi, original)]
    pad = []
    for k in reversed(range(axes)):
        diff = max(roi[k] - original[k], 0)
        pad += [diff // 2, diff - diff // 2]
    if any(pad):
        inputs = F.pad(inputs, pad, mode="constant", value=cval)
    image = list(inputs.shape[2:])
    origins = scan_starts(image, roi, overlap)
    weight = importance_map(roi, mode, sigma_scale)
    batch = inputs.shape[0]
    windows = [(b, o) for b in range(batch) for o in origins]
    output = count = None
    for first in range(0, len(windows), sw_batch_size):
        chunk = windows[first:first + sw_batch_size]
        data = torch.cat([inputs[(slice(b, b + 1), slice(None)) + tuple(slice(s, s + r) for s, r in zip(o, roi))] for b, o in chunk])
        predicted = predictor(data)
        if output is None:
            zoom = [p / r for p, r in zip(predicted.shape[2:], roi)]
            output = torch.zeros([batch, predicted.shape[1]] + [int(n * z) for n, z in zip(image, zoom)])
            count = torch.zeros([int(n * z) for n, z in zip(image, zoom)])
            if predicted.shape[2:] != weight.shape:
                weight = F.interpolate(weight[None, None], size=predicted.shape[2:], mode="nearest")[0, 0]
            for o in origins:
                count[tuple(slice(int(s * z), int(s * z) + p) for s, z, p in zip(o, zoom, weight.shape))] += weight
        for (b, o), p in zip(chunk, predicted):
            output[(b, slice(None)) + tuple(slice(int(s * z), int(s * z) + n) for s, z, n in zip(o, zoom, weight.shape))] += p * weight
    output = output / count
    crop = tuple(slice(int(pad[2 * (axes - 1 - a)] * zoom[a]), int(pad[2 * (axes - 1 - a)] * zoom[a]) + int(original[a] * zoom[a])) for a in range(axes))
    return output[(slice(None), slice(None)) + crop]


def parity_input():
    """The fixed case of tests/heads/SlidingWindowTests: [2,1,13,11] with a window [8,6]."""
    x = torch.arange(2 * 13 * 11, dtype=torch.float).reshape(2, 1, 13, 11)
    return torch.sin(x * 0.37) + x * 0.01


def parity_predictor(windows):
    """Depends on where a pixel sits in its window, so every window placement and weight shows in the result."""
    ramp = torch.arange(windows.shape[2], dtype=torch.float)[:, None] * 0.1 + torch.arange(windows.shape[3], dtype=torch.float)[None, :] * 0.03
    return torch.cat([windows * (1 + ramp), windows.square() - ramp], dim=1)


class DenseReadout(nn.Module):
    """Twin of heads/DenseReadout.cs: position query + projected 3^n neighbourhood -> decoder -> LayerNorm -> Linear."""

    def __init__(self, model, outputs, context=3):
        super().__init__()
        c = model.config
        self.context, self.channels, self.chunk = context, c["in_channels"], c["query_chunk"]
        self.pixels_3d = nn.Linear(self.channels * context ** 3, c["dim"])
        self.norm = nn.LayerNorm(c["dim"])
        self.fc = nn.Linear(c["dim"], outputs)

    def forward(self, model, latents, images):
        size = list(images.shape[2:])
        x = images.expand(images.shape[0], self.channels, *size)
        r = self.context // 2
        padded = F.pad(x, [r] * 6, mode="replicate")
        shifted = [padded[:, :, a:a + size[0], b:b + size[1], c:c + size[2]]
                   for a in range(self.context) for b in range(self.context) for c in range(self.context)]
        features = torch.cat(shifted, dim=1).flatten(2).transpose(1, 2)
        positions = fourier_grid_features(size, model.config["fourier_bands"])
        outputs = []
        for start in range(0, positions.shape[0], self.chunk):
            queries = model.query_pos_3d(positions[start:start + self.chunk])[None] + self.pixels_3d(features[:, start:start + self.chunk])
            outputs.append(self.fc(self.norm(model.decode(latents, queries))))
        return torch.cat(outputs, dim=1).transpose(1, 2).reshape(images.shape[0], -1, *size)


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Medformer(args.config).eval()
    readout = DenseReadout(model, args.classes).eval()
    volume = torch.randn(1, 1, args.size, args.size, args.size)

    def predictor(windows):
        keys = [("abdomen", "ct", "segmentation")] * windows.shape[0]
        return readout(model, model(windows, keys), windows)

    def run():
        with torch.no_grad():
            return sliding_window_inference(volume, [args.roi] * 3, args.batch, predictor).argmax(1, keepdim=True)

    run()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "seconds": sorted(times)[len(times) // 2],
        "windows": len(scan_starts([args.size] * 3, [args.roi] * 3, 0.25)),
        "shape": list(out.shape),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parity", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--roi", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.parity:
        torch.set_num_threads(1)
        gaussian = sliding_window_inference(parity_input(), [8, 6], 3, parity_predictor)
        constant = sliding_window_inference(parity_input(), [8, 6], 2, parity_predictor, overlap=0.5, mode="constant")
        padded = sliding_window_inference(parity_input()[:, :, :5, :], [8, 6], 4, parity_predictor)
        print(json.dumps({"gaussian": gaussian.flatten().tolist(), "constant": constant.flatten().tolist(), "padded": padded.flatten().tolist()}))
    else:
        bench(args)


if __name__ == "__main__":
    main()
