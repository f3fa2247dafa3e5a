"""PyTorch 1.13 side of bench/run heads' fine-tuning rows: full fine-tuning steps of the Medformer twin (medformer.py)
with a twin of a head, eager fp32, as heads/FineTuneModule.cs and pretrain/Training/Trainer.cs compute them.

classification: heads/ClassificationHead.cs with its defaults (multi-class, flatten pooling): the latents [B,N,d]
    laid side by side, LayerNorm, a zero-initialised Linear to K logits; cross-entropy.
segmentation: heads/SegmentationHead.cs on 3D crops: DenseReadout (sliding_window.py's twin: a Fourier position
    query plus a projected 3^3 neighbourhood per voxel, decoded in query_chunk chunks, LayerNorm, Linear) and
    MONAI's DiceCELoss(to_onehot_y=True, softmax=True) as heads/DiceCELoss.cs.
The step: loss, backward, global gradient-norm clipping at 1, AdamW (lr 1e-3, betas 0.9/0.95, decay 0.05 on matrices
only), as the trainer with FineTuneOptions' defaults; the batches are made before timing.
"""
import argparse
import json
import os
import resource
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from medformer import Medformer  # noqa: E402
from pretrain import decays, time_steps  # noqa: E402
from sliding_window import DenseReadout  # noqa: E402


class ClassificationHead(nn.Module):
    def __init__(self, c, classes):
        super().__init__()
        width = c["dim"] * (c["general_latents"] + 4 * c["latents_per_bank"])
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, classes)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def loss(self, model, latents, images, labels):
        return F.cross_entropy(self.fc(self.norm(latents.flatten(1))), labels)


class SegmentationHead(nn.Module):
    def __init__(self, model, classes):
        super().__init__()
        self.readout = DenseReadout(model, classes)
        for linear in (self.readout.pixels_3d, self.readout.fc):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(self.readout.fc.weight)

    def loss(self, model, latents, images, labels):
        logits = self.readout(model, latents, images)                                      # [B,K,D,H,W]
        probabilities = logits.softmax(1)
        onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(probabilities.dtype)
        reduce = list(range(2, logits.dim()))
        intersection = (probabilities * onehot).sum(reduce)
        denominator = probabilities.sum(reduce) + onehot.sum(reduce)
        dice = 1.0 - (2.0 * intersection + 1e-5) / (denominator + 1e-5)
        return dice.mean() + F.cross_entropy(logits, labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--head", choices=["classification", "segmentation"], required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, nargs="+", required=True)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = Medformer(args.config)
    c = model.config
    head = ClassificationHead(c, args.classes) if args.head == "classification" else SegmentationHead(model, args.classes)
    network = nn.Module()
    network.model = model
    network.head = head
    named = [(n, p) for n, p in network.named_parameters()]
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": 0.05},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ], lr=1e-3, betas=(0.9, 0.95))
    parameters = [p for _, p in named]

    organ, modality, task = ("abdomen", "ct", "segmentation") if args.head == "segmentation" else ("chest", "xray", "classification")
    keys = [(organ, modality, task)] * args.batch
    shape = [args.batch, 1] + args.size
    if args.head == "classification":
        batches = [(torch.rand(shape), torch.randint(0, args.classes, (args.batch,))) for _ in range(args.batches)]
    else:
        batches = [(torch.rand(shape), torch.randint(0, args.classes, [args.batch] + args.size)) for _ in range(args.batches)]

    network.train()

    def step(i):
        images, labels = batches[i % len(batches)]
        loss = head.loss(model, model(images, keys), images, labels)
        loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    times = time_steps(step, args.warmup, args.steps)
    print(json.dumps({
        "step_s": sorted(times)[len(times) // 2],
        "mean_step_s": sum(times) / len(times),
        "parameters": sum(p.numel() for p in parameters if p.requires_grad),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
