"""The PyTorch twin of model/MedformerModel.cs, for parity tests and speed baselines (Debian's PyTorch 1.13).

Same modules, same state_dict keys, same maths; PyTorch 1.13 has no scaled_dot_product_attention, so attention is
written out as softmax(q k^T / sqrt(d_h)) v.
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def snake_config(path_or_dict):
    if isinstance(path_or_dict, dict):
        return path_or_dict
    with open(path_or_dict) as f:
        return json.load(f)


def fourier_width(axes, bands):
    return axes * (2 * bands + 1)


def fourier_grid_features(grid, bands, device=None):
    axes = [torch.linspace(-1.0 + 1.0 / n, 1.0 - 1.0 / n, n, device=device) for n in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    positions = torch.stack([m.flatten() for m in mesh], dim=-1)                       # [P, axes]
    nyquist = torch.tensor([max(n / 2.0, 1.0) for n in grid], device=device)
    steps = torch.linspace(0.0, 1.0, bands, device=device)
    frequencies = 1.0 + steps[None, :] * (nyquist[:, None] - 1.0)                     # [axes, bands]
    angles = (math.pi * positions[..., None] * frequencies).flatten(1)                # [P, axes*bands]
    return torch.cat([positions, angles.sin(), angles.cos()], dim=-1)


def attention(q, k, v, dropout, training):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = scores.softmax(dim=-1)
    if training and dropout > 0:
        weights = F.dropout(weights, dropout)
    return weights @ v


class PatchTokenizer(nn.Module):
    def __init__(self, c, axes):
        super().__init__()
        self.axes = axes
        self.patch = c["patch_size2d"] if axes == 2 else c["patch_size3d"]
        self.channels = c["in_channels"]
        self.bands = c["fourier_bands"]
        conv = nn.Conv2d if axes == 2 else nn.Conv3d
        self.proj = conv(self.channels, c["dim"], kernel_size=self.patch, stride=self.patch)
        self.pos_proj = nn.Linear(fourier_width(axes, self.bands), c["dim"])

    def forward(self, x):
        grid = [n // self.patch for n in x.shape[2:]]
        if x.shape[1] != self.channels:
            x = x.expand(x.shape[0], self.channels, *x.shape[2:])
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        positions = fourier_grid_features(grid, self.bands, x.device).to(tokens.dtype)
        return tokens + self.pos_proj(positions)


class LatentBanks(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, per_bank = c["dim"], c["latents_per_bank"]
        self.general = nn.Parameter(torch.zeros(c["general_latents"], d))
        self.organ = nn.ParameterDict({n: nn.Parameter(torch.zeros(per_bank, d)) for n in c["organs"]})
        self.modality = nn.ParameterDict({n: nn.Parameter(torch.zeros(per_bank, d)) for n in c["modalities"]})
        self.dimensionality = nn.ParameterDict({n: nn.Parameter(torch.zeros(per_bank, d)) for n in c["dimensionalities"]})
        self.task = nn.ParameterDict({n: nn.Parameter(torch.zeros(per_bank, d)) for n in c["tasks"]})

    @staticmethod
    def pick(banks, names):
        names = [n if n in banks else "other" for n in names]
        return torch.stack([banks[n] for n in names])

    def select(self, keys, dims):
        b = len(keys)
        parts = []
        if self.general.shape[0] > 0:
            parts.append(self.general[None].expand(b, -1, -1))
        parts.append(self.pick(self.organ, [k[0] for k in keys]))
        parts.append(self.pick(self.modality, [k[1] for k in keys]))
        parts.append(self.dimensionality[dims][None].expand(b, -1, -1))
        parts.append(self.pick(self.task, [k[2] for k in keys]))
        return torch.cat(parts, dim=1)


class Attention(nn.Module):
    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context):
        b, n, d = x.shape
        m = context.shape[1]
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, self.dropout, self.training)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class SelfAttention(nn.Module):
    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, self.dropout, self.training)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, widening, dropout):
        super().__init__()
        self.fc1 = nn.Linear(dim, widening * dim)
        self.fc2 = nn.Linear(widening * dim, dim)
        self.dropout = dropout

    def forward(self, x):
        return F.dropout(self.fc2(F.gelu(self.fc1(x))), self.dropout, self.training)


class SelfAttentionBlock(nn.Module):
    def __init__(self, dim, heads, widening, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, widening, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CrossAttentionBlock(nn.Module):
    def __init__(self, dim, heads, widening, dropout):
        super().__init__()
        self.ln_q = nn.LayerNorm(dim)
        self.ln_kv = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, widening, dropout)

    def forward(self, x, context):
        x = x + self.attn(self.ln_q(x), self.ln_kv(context))
        return x + self.mlp(self.ln_2(x))


class Medformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = self.config = snake_config(config)
        d = c["dim"]
        self.tokenizer_2d = PatchTokenizer(c, 2)
        self.tokenizer_3d = PatchTokenizer(c, 3)
        self.latents = LatentBanks(c)
        self.encoder = CrossAttentionBlock(d, c["cross_attention_heads"], c["widening"], c["dropout"])
        self.blocks = nn.ModuleList(
            [SelfAttentionBlock(d, c["self_attention_heads"], c["widening"], c["dropout"]) for _ in range(c["depth"])])
        self.ln_f = nn.LayerNorm(d)
        self.decoder = CrossAttentionBlock(d, c["decoder_heads"], c["widening"], c["dropout"])
        self.query_pos_2d = nn.Linear(fourier_width(2, c["fourier_bands"]), d)
        self.query_pos_3d = nn.Linear(fourier_width(3, c["fourier_bands"]), d)

    def forward(self, images, keys):
        dims = "2d" if images.dim() == 4 else "3d"
        tokens = (self.tokenizer_2d if dims == "2d" else self.tokenizer_3d)(images)
        z = self.latents.select(keys, dims)
        z = self.encoder(z, tokens)
        for _ in range(self.config["repeats"]):
            for block in self.blocks:
                z = block(z)
        return self.ln_f(z)

    def position_queries(self, size):
        features = fourier_grid_features(size, self.config["fourier_bands"], self.query_pos_2d.weight.device)
        return (self.query_pos_2d if len(size) == 2 else self.query_pos_3d)(features)[None]

    def decode(self, latents, queries):
        if queries.shape[0] == 1 and latents.shape[0] > 1:
            queries = queries.expand(latents.shape[0], -1, -1)
        return self.decoder(queries, latents)


class ClassificationHead(nn.Module):
    """The twin of heads/ClassificationHead.cs (same names: queries, norm, fc, thresholds): the latents pooled
    (flatten, mean, a learned query, or one query per class), LayerNorm, Linear. forward gives the raw outputs,
    predict the probabilities `medformer predict` writes."""

    def __init__(self, config, classes, type="multi-class", pooling="flatten", label_smoothing=0.0):
        super().__init__()
        c = snake_config(config)
        d = c["dim"]
        self.classes, self.type, self.pooling = int(classes), type, pooling
        types = ("multi-class", "multi-label", "binary-class", "ordinal-regression")
        if type not in types or pooling not in ("flatten", "mean", "query", "class_queries"):
            raise ValueError(f"classification head: type {type!r} or pooling {pooling!r} is unknown")
        outputs = 1 if type in ("binary-class", "ordinal-regression") else self.classes
        width = d * (c["general_latents"] + 4 * c["latents_per_bank"]) if pooling == "flatten" else d
        if pooling in ("query", "class_queries"):
            self.queries = nn.Parameter(torch.zeros(1, 1 if pooling == "query" else outputs, d))
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 1 if pooling == "class_queries" else outputs)
        if type == "ordinal-regression":
            self.thresholds = nn.Parameter(torch.zeros(self.classes - 1))

    def forward(self, model, latents):
        if self.pooling == "flatten":
            pooled = latents.flatten(1)                                                 # [B,N*d]
        elif self.pooling == "mean":
            pooled = latents.mean(1)                                                    # [B,d]
        elif self.pooling == "query":
            pooled = model.decode(latents, self.queries).squeeze(1)                     # [B,d]
        else:
            pooled = model.decode(latents, self.queries)                                # [B,K,d]
        outputs = self.fc(self.norm(pooled))
        return outputs.squeeze(-1) if self.pooling == "class_queries" else outputs     # [B,K] or [B,1]

    def predict(self, outputs):
        if self.type == "multi-class":
            return outputs.softmax(1)
        if self.type == "multi-label":
            return outputs.sigmoid()
        if self.type == "binary-class":
            return torch.cat([1 - outputs.sigmoid(), outputs.sigmoid()], 1)
        theta = torch.cat([self.thresholds[:1], F.softplus(self.thresholds[1:])]).cumsum(0)   # ordered [K-1]
        below = (theta[None] - outputs).sigmoid()                                       # P(y <= k) [B,K-1]
        zeros, ones = torch.zeros(outputs.shape[0], 1), torch.ones(outputs.shape[0], 1)
        cumulative = torch.cat([zeros, below, ones], 1)
        return cumulative[:, 1:] - cumulative[:, :-1]


HEADS = {"classification": ClassificationHead}


class FineTuned(nn.Module):
    """A fine-tuned Medformer as `medformer finetune` saves it: the model ("model.*") and its head ("head.*"), described
    by head.json (kind, task bank, settings, class names). forward(images, keys) returns what `medformer predict`
    returns: keys are one (organ, modality) per sample; the head's task bank is added."""

    def __init__(self, config, head):
        super().__init__()
        description = snake_config(head)
        kind = description["kind"]
        if kind not in HEADS:
            raise ValueError(f"a {kind} head: this medformer.py has twins of {', '.join(HEADS)} heads only")
        self.model = Medformer(config)
        self.task = description["task"]
        self.class_names = description.get("class_names")
        self.head = HEADS[kind](self.model.config, **description["settings"])

    def forward(self, images, keys):
        latents = self.model(images, [(organ, modality, self.task) for organ, modality in keys])
        return self.head.predict(self.head(self.model, latents))
