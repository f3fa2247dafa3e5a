"""PyTorch 1.13 side of bench/run model: training steps of the Medformer twin (medformer.py), fp32."""
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
from medformer import Medformer  # noqa: E402

ORGANS = ["chest", "brain", "blood", "skin"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = Medformer(args.config)
    head = nn.Linear(model.config["dim"], 10)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-4)
    images = torch.randn(args.batch, 1, args.size, args.size)
    labels = torch.randint(0, 10, (args.batch,))
    keys = [(ORGANS[i % len(ORGANS)], "other", "classification") for i in range(args.batch)]

    def step():
        F.cross_entropy(head(model(images, keys).mean(1)), labels).backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "step_s": sorted(times)[len(times) // 2],
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
