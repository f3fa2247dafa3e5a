"""PyTorch 1.13 twin of heads/SlidingWindow.cs: MONAI's sliding_window_inference written out (MONAI is not in
Debian; the function lives in medformer.py, which `medformer export` ships), and the side of bench/run heads that
times it on a 128^3 volume with the Medformer twin's segmentation head.

  sliding_window.py --parity             prints the blended output of a fixed, position-dependent predictor (tests)
  sliding_window.py --threads N --config config.json --size 128 --roi 32 --batch 4 --classes 2   (bench)
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from medformer import Medformer, fourier_grid_features, scan_starts, sliding_window_inference  # noqa: E402


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
