"""PyTorch 1.13 side of bench/run pretrain: the pretraining job's default objective mix on the Medformer twin
(medformer.py), eager fp32, as pretrain/Objectives/*.cs and pretrain/Training/Trainer.cs compute it.

inpainting (weight 1): MAE through Perceiver IO, 75% of the patch tokens dropped before the encoder; position
    queries + a mask token read the latents back for the masked patches; MSE on their raw pixels.
rotation (weight 0.5): a quarter turn per image, a pooled query + LayerNorm + linear head, 4-way cross-entropy.
simclr (weight 0.5): both views through the model, the pooled query, a projector Linear-BatchNorm-ReLU-Linear,
    NT-Xent at temperature 0.2.
The step: the weighted sum, backward, global gradient-norm clipping at 1, AdamW (decay on matrices only), as the
trainer; the batches are made before timing (random images, two views), as ours.
"""
import argparse
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
from medformer import Medformer  # noqa: E402


def time_steps(step, warmup, steps):
    """Runs `warmup` untimed steps, then `steps` timed ones; their wall times in seconds."""
    for i in range(warmup):
        step(i)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(warmup + i)
        times.append(time.perf_counter() - start)
    return times


def learned_query(count, dim):
    q = nn.Parameter(torch.empty(1, count, dim))
    nn.init.trunc_normal_(q, std=0.02)
    return q


def encode(model, tokens, keys):
    """Medformer.Encode: latents read any subset of a grid's tokens, then the self-attention stack."""
    z = model.latents.select(keys, "2d")
    z = model.encoder(z, tokens)
    for _ in range(model.config["repeats"]):
        for block in model.blocks:
            z = block(z)
    return model.ln_f(z)


def patchify(images, p):
    b, c, h, w = images.shape
    return images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


class AttentionPool(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.query = learned_query(1, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, model, latents):
        return self.norm(model.decode(latents, self.query).squeeze(1))


class Inpainting(nn.Module):
    task = "inpainting"

    def __init__(self, c, mask_ratio):
        super().__init__()
        d, p = c["dim"], c["patch_size2d"]
        self.channels, self.patch, self.mask_ratio = c["in_channels"], p, mask_ratio
        self.mask_token = learned_query(1, d)
        self.norm = nn.LayerNorm(d)
        self.pixels_2d = nn.Linear(d, p * p * self.channels)
        self.pixels_3d = nn.Linear(d, c["patch_size3d"] ** 3 * self.channels)  # as ours: unused on 2D batches

    def loss(self, model, views, metas):
        x = views[0]
        b = x.shape[0]
        if x.shape[1] == 1 and self.channels > 1:
            x = x.expand(b, self.channels, *x.shape[2:])
        tokens = model.tokenizer_2d(x)                                                  # [B,T,d]
        t, d = tokens.shape[1], tokens.shape[2]
        hidden_count = round(self.mask_ratio * t)                                       # to even on ties, as ours
        order = torch.rand(b, t, dtype=torch.float64).argsort(1)
        hidden_index = order[:, :hidden_count].sort(1).values
        visible_index = order[:, hidden_count:].sort(1).values
        visible = tokens.gather(1, visible_index[..., None].expand(-1, -1, d))
        latents = encode(model, visible, [(o, m, self.task) for o, m in metas])
        grid = (x.shape[2] // self.patch, x.shape[3] // self.patch)
        queries = (model.position_queries(grid) + self.mask_token).expand(b, -1, -1)   # [B,T,d]
        hidden = queries.gather(1, hidden_index[..., None].expand(-1, -1, d))
        predicted = self.pixels_2d(self.norm(model.decode(latents, hidden)))
        target = patchify(x, self.patch)
        target = target.gather(1, hidden_index[..., None].expand(-1, -1, target.shape[2]))
        return (predicted - target).square().mean(-1).mean()


class Rotation(nn.Module):
    task = "rotation"

    def __init__(self, dim):
        super().__init__()
        self.pool = AttentionPool(dim)
        self.fc = nn.Linear(dim, 4)

    def loss(self, model, views, metas):
        x = views[0]
        b = x.shape[0]
        turns = torch.randint(0, 4, (b,))
        every = torch.stack([x, x.rot90(1, (2, 3)), x.rot90(2, (2, 3)), x.rot90(3, (2, 3))])
        rotated = every[turns, torch.arange(b)]
        logits = self.fc(self.pool(model, model(rotated, [(o, m, self.task) for o, m in metas])))
        return F.cross_entropy(logits, turns)


class SimClr(nn.Module):
    task = "simclr"

    def __init__(self, dim, temperature, projection_dim):
        super().__init__()
        self.temperature = temperature
        self.pool = AttentionPool(dim)
        self.projector = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, projection_dim))

    def loss(self, model, views, metas):
        n = views[0].shape[0]
        keys = [(o, m, self.task) for o, m in metas]
        z = self.projector(self.pool(model, model(torch.cat(views), keys + keys)))
        z = F.normalize(z, dim=-1)
        logits = (z @ z.t()) / self.temperature
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        positive = (torch.arange(2 * n) + n) % (2 * n)
        return F.cross_entropy(logits, positive)


def init_heads(objective):
    """Pretraining.InitHeads: truncated normal (std 0.02) and zero bias on every linear layer of a head."""
    for module in objective.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


def decays(name, parameter):
    """Trainer.Decays: matrices decay; norms, biases, latent banks and learned queries do not."""
    return (parameter.dim() >= 2 and "latents." not in name and not name.endswith("query")
            and "norm" not in name and ".ln" not in name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--mix", default="inpainting=1,rotation=0.5,simclr=0.5", help="objective=weight, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = Medformer(args.config)
    c, d = model.config, model.config["dim"]
    make = {"inpainting": lambda: Inpainting(c, 0.75), "rotation": lambda: Rotation(d), "simclr": lambda: SimClr(d, 0.2, 128)}
    mix = [(make[name](), float(weight)) for name, weight in (part.split("=") for part in args.mix.split(","))]
    network = nn.Module()
    network.model = model
    network.objectives = nn.ModuleDict({o.task: o for o, _ in mix})
    for objective, _ in mix:
        init_heads(objective)
    named = list(network.named_parameters())
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": 0.05},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ], lr=1e-3, betas=(0.9, 0.95))
    parameters = [p for _, p in named]

    metas = [("chest", "xray")] * args.batch  # as ours: one in-memory corpus of chest X-rays
    batches = [[torch.rand(args.batch, 1, args.size, args.size) for _ in range(2)] for _ in range(args.batches)]

    network.train()

    def step(i):
        views = batches[i % len(batches)]
        parts = [(objective.loss(model, views, metas), weight) for objective, weight in mix]
        loss = sum(part * weight for part, weight in parts)
        loss.backward()
        loss.item()
        for part, _ in parts:
            part.item()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    times = time_steps(step, args.warmup, args.steps)
    print(json.dumps({
        "step_s": sorted(times)[len(times) // 2],
        "mean_step_s": sum(times) / len(times),
        "parameters": sum(p.numel() for p in parameters),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
