"""The PyTorch twin of model/MedformerModel.cs, for parity tests and speed baselines (Debian's PyTorch 1.13), and of
the heads (heads/ClassificationHead.cs, DenseReadout.cs, SegmentationHead.cs, ImageToImageHead.cs, SlidingWindow.cs)
that `medformer export` ships with a fine-tuned model.

Same modules, same state_dict keys, same maths; PyTorch 1.13 has no scaled_dot_product_attention, so attention is
written out as softmax(q k^T / sqrt(d_h)) v.
"""
import itertools
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
    return fourier_features(positions, grid, bands)


def fourier_grid_rows(grid, bands, start, count, device=None):
    """Rows [start, start + count) of fourier_grid_features (row-major, first axis slowest), without the whole grid:
    model/Fourier.cs's GridFeatures(grid, bands, start, count)."""
    flat = torch.arange(start, start + count, device=device)
    stride, columns = math.prod(grid), []
    for n in grid:
        stride //= n
        axis = torch.linspace(-1.0 + 1.0 / n, 1.0 - 1.0 / n, n, device=device)
        columns.append(axis[torch.div(flat, stride, rounding_mode="floor") % n])
    return fourier_features(torch.stack(columns, dim=-1), grid, bands)


def fourier_features(positions, grid, bands):
    device = positions.device
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
        stem = c.get("stem", "patch")       # a config.json without the key is a patch tokenizer
        if stem == "conv":
            # model/MedformerModel.cs's conv stem: two 3x3 convolutions with ReLU, then the strided patch convolution.
            h = c.get("stem_channels", 32)
            self.stem = nn.Sequential(
                conv(self.channels, h, kernel_size=3, padding=1), nn.ReLU(),
                conv(h, h, kernel_size=3, padding=1), nn.ReLU(),
                conv(h, c["dim"], kernel_size=self.patch, stride=self.patch))
        elif stem == "patch":
            self.proj = conv(self.channels, c["dim"], kernel_size=self.patch, stride=self.patch)
        else:
            raise ValueError(f"config: stem must be \"patch\" or \"conv\", not {stem!r}")
        self.pos_proj = nn.Linear(fourier_width(axes, self.bands), c["dim"])

    def forward(self, x):
        grid = [n // self.patch for n in x.shape[2:]]
        if x.shape[1] != self.channels:
            x = x.expand(x.shape[0], self.channels, *x.shape[2:])
        tokens = (self.stem if hasattr(self, "stem") else self.proj)(x).flatten(2).transpose(1, 2)
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


def importance_map(roi, mode="gaussian", sigma_scale=0.125):
    """The blending weights of one window (heads/SlidingWindow.cs, MONAI's): ones, or a separable Gaussian peaking at 1
    in the window's centre (sigma = sigma_scale x the extent), floored at max(its minimum, 1e-3)."""
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
    """Window origins over an image, first axis slowest (MONAI's dense_patch_slices): every roi*(1 - overlap) pixels,
    the last window flush with the border."""
    starts = []
    for size, r in zip(image, roi):
        interval = r if r == size else max(int(r * (1 - overlap)), 1)
        count = next(d for d in range(int(math.ceil(size / interval)) + 1) if d * interval + r >= size) + 1
        starts.append([i * interval - max(i * interval + r - size, 0) for i in range(count)])
    return list(itertools.product(*starts))


def sliding_window_inference(inputs, roi, sw_batch_size, predictor, overlap=0.25, mode="gaussian", sigma_scale=0.125, cval=0.0):
    """MONAI's sliding_window_inference as heads/SlidingWindow.cs has it: inputs [B,C,...] -> the predictor's outputs on
    windows of roi, blended by the importance map; images smaller than the window are padded (constant cval) and
    cropped back; a predictor on a finer grid (super-resolution) is blended on that grid."""
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
    weight = importance_map(roi, mode, sigma_scale).to(inputs.device)
    batch = inputs.shape[0]
    windows = [(b, o) for b in range(batch) for o in origins]
    output = count = None
    for first in range(0, len(windows), sw_batch_size):
        chunk = windows[first:first + sw_batch_size]
        data = torch.cat([inputs[(slice(b, b + 1), slice(None)) + tuple(slice(s, s + r) for s, r in zip(o, roi))] for b, o in chunk])
        predicted = predictor(data).float()
        if output is None:
            zoom = [p / r for p, r in zip(predicted.shape[2:], roi)]
            output = torch.zeros([batch, predicted.shape[1]] + [int(n * z) for n, z in zip(image, zoom)], device=inputs.device)
            count = torch.zeros([int(n * z) for n, z in zip(image, zoom)], device=inputs.device)
            if predicted.shape[2:] != weight.shape:
                weight = F.interpolate(weight[None, None], size=predicted.shape[2:], mode="nearest")[0, 0]
            for o in origins:
                count[tuple(slice(int(s * z), int(s * z) + p) for s, z, p in zip(o, zoom, weight.shape))] += weight
        for (b, o), p in zip(chunk, predicted):
            output[(b, slice(None)) + tuple(slice(int(s * z), int(s * z) + n) for s, z, n in zip(o, zoom, weight.shape))] += p * weight
    output = output / count
    crop = tuple(slice(int(pad[2 * (axes - 1 - a)] * zoom[a]), int(pad[2 * (axes - 1 - a)] * zoom[a]) + int(original[a] * zoom[a])) for a in range(axes))
    return output[(slice(None), slice(None)) + crop]


class DenseReadout(nn.Module):
    """The twin of heads/DenseReadout.cs (names pixels_2d, pixels_3d, norm, fc): one query per output pixel or voxel,
    the Fourier position query of its centre plus a projection of the input's k^n neighbourhood there (edge-replicated,
    resampled to the output grid when it is finer; none with pixel_context 0), decoded `query_chunk` at a time, then
    LayerNorm and Linear."""

    def __init__(self, config, outputs, pixel_context=3):
        super().__init__()
        c = snake_config(config)
        self.context, self.channels, self.chunk = int(pixel_context), c["in_channels"], c.get("query_chunk", 16384)
        if self.context < 0 or (self.context > 0 and self.context % 2 == 0):
            raise ValueError(f"pixel context {self.context} must be 0 (position queries only) or an odd neighbourhood width")
        if self.context > 0:
            self.pixels_2d = nn.Linear(self.channels * self.context ** 2, c["dim"])
            self.pixels_3d = nn.Linear(self.channels * self.context ** 3, c["dim"])
        self.norm = nn.LayerNorm(c["dim"])
        self.fc = nn.Linear(c["dim"], outputs)

    def neighbourhoods(self, images, size):
        """Each pixel's k^n neighbourhood on the output grid, flattened: [B, C*k^n, P]."""
        axes = images.dim() - 2
        x = images
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ValueError(f"input has {x.shape[1]} channels; the model takes 1 or {self.channels}")
            x = x.expand(x.shape[0], self.channels, *x.shape[2:])
        r = self.context // 2
        padded = F.pad(x, [r] * (2 * axes), mode="replicate")
        shifted = [padded[(slice(None), slice(None)) + tuple(slice(o, o + n) for o, n in zip(offset, x.shape[2:]))]
                   for offset in itertools.product(range(self.context), repeat=axes)]
        features = torch.cat(shifted, dim=1)
        if list(features.shape[2:]) != list(size):
            features = F.interpolate(features, size=list(size), mode="bilinear" if axes == 2 else "trilinear", align_corners=False)
        return features.flatten(2)

    def forward(self, model, latents, images, size):
        axes = images.dim() - 2
        features = self.neighbourhoods(images, size) if self.context > 0 else None
        position_proj = model.query_pos_2d if axes == 2 else model.query_pos_3d
        cells, outputs = math.prod(size), []
        for start in range(0, cells, self.chunk):
            count = min(self.chunk, cells - start)
            positions = fourier_grid_rows(list(size), model.config["fourier_bands"], start, count, latents.device).to(latents.dtype)
            queries = position_proj(positions)[None]
            if features is not None:
                queries = queries + (self.pixels_2d if axes == 2 else self.pixels_3d)(features[:, :, start:start + count].transpose(1, 2))
            outputs.append(self.fc(self.norm(model.decode(latents, queries))))
        return torch.cat(outputs, dim=1).transpose(1, 2).reshape(latents.shape[0], -1, *size)


def _dense_images(images, dimensionality, kind):
    axes = 3 if dimensionality == "3d" else 2
    if images.dim() != axes + 2:
        raise ValueError(f"the {kind} head takes {'3D volumes [B,C,D,H,W]' if axes == 3 else '2D images [B,C,H,W]'}, not [{', '.join(map(str, images.shape))}]")
    return images


class SegmentationHead(nn.Module):
    """The twin of heads/SegmentationHead.cs: a dense read-out gives logits for `classes` classes (background 0) at every
    pixel or voxel; predict gives the label map [B,1,...] (the argmax), what `medformer predict` writes as NAME_mask.
    lambda_dice and lambda_ce weigh the training loss only."""

    dense = True

    def __init__(self, config, classes, dimensionality="2d", pixel_context=3, lambda_dice=1.0, lambda_ce=1.0):
        super().__init__()
        self.kind, self.classes, self.dimensionality = "segmentation", int(classes), dimensionality
        if self.classes < 2 or dimensionality not in ("2d", "3d"):
            raise ValueError(f"segmentation head: classes {classes} (at least 2) or dimensionality {dimensionality!r} (2d or 3d) is wrong")
        self.readout = DenseReadout(config, self.classes, pixel_context)

    def forward(self, model, latents, images):
        images = _dense_images(images, self.dimensionality, self.kind)
        return self.readout(model, latents, images, list(images.shape[2:])).float()     # logits [B,K,...]

    def predict(self, outputs):
        return outputs.argmax(1, keepdim=True)                                          # labels [B,1,...]

    def probabilities(self, outputs):
        return outputs.softmax(1)


class ImageToImageHead(nn.Module):
    """The twin of heads/ImageToImageHead.cs, kinds restoration, super-resolution (scale 2 or 4) and translation: a dense
    read-out predicts out_channels values per pixel of the output grid (the input's x scale); with residual they are
    added to the input's first channels (bi/trilinearly upsampled for super-resolution). predict gives the images, what
    `medformer predict` writes as NAME_KIND. l1, mse, ssim and data_range weigh the training loss only."""

    dense = True

    def __init__(self, config, kind, dimensionality="2d", out_channels=1, scale=None, residual=None, pixel_context=3,
                 l1=1.0, mse=0.0, ssim=0.0, data_range=None):
        super().__init__()
        if kind not in ("restoration", "super-resolution", "translation") or dimensionality not in ("2d", "3d"):
            raise ValueError(f"image-to-image head: kind {kind!r} or dimensionality {dimensionality!r} is unknown")
        scale = int(scale if scale is not None else (2 if kind == "super-resolution" else 1))
        if (scale not in (2, 4)) if kind == "super-resolution" else scale != 1:
            raise ValueError(f"{kind}: scale {scale} is not one this kind takes")
        self.kind, self.dimensionality, self.out_channels, self.scale = kind, dimensionality, int(out_channels), scale
        self.residual = (kind != "translation") if residual is None else bool(residual)
        self.readout = DenseReadout(config, self.out_channels, pixel_context)

    def forward(self, model, latents, images):
        images = _dense_images(images, self.dimensionality, self.kind)
        if self.residual and images.shape[1] < self.out_channels:
            raise ValueError(f"a residual head adds its {self.out_channels} output channel(s) to the input's first ones, and the input has {images.shape[1]}")
        size = [n * self.scale for n in images.shape[2:]]
        output = self.readout(model, latents, images, size).float()
        if self.residual:
            basis = images[:, :self.out_channels].float()
            if self.scale > 1:
                basis = F.interpolate(basis, size=size, mode="bilinear" if images.dim() == 4 else "trilinear", align_corners=False)
            output = output + basis
        return output                                                                  # images [B,out_channels,...x scale]

    def predict(self, outputs):
        return outputs.float()


HEADS = {
    "classification": ClassificationHead,
    "segmentation": SegmentationHead,
    "restoration": lambda config, **settings: ImageToImageHead(config, "restoration", **settings),
    "super-resolution": lambda config, **settings: ImageToImageHead(config, "super-resolution", **settings),
    "translation": lambda config, **settings: ImageToImageHead(config, "translation", **settings),
}


class FineTuned(nn.Module):
    """A fine-tuned Medformer as `medformer finetune` saves it: the model ("model.*") and its head ("head.*"), described
    by head.json (kind, task bank, settings, class names, input shape). forward(images, keys) returns what
    `medformer predict` returns: class probabilities [B,K] (classification), the label map [B,1,...] (segmentation) or
    the images [B,C,...] (restoration, super-resolution, translation). keys are one (organ, modality) per sample
    (default ("other", "other"), as predict reads files); the head's task bank is added. A dense head predicts images of
    the training input's shape whole and any other size by sliding windows of that shape (MONAI's
    sliding_window_inference: overlap 0.25, Gaussian blending, one window per call), as `medformer predict` does."""

    def __init__(self, config, head):
        super().__init__()
        description = snake_config(head)
        kind = description["kind"]
        if kind not in HEADS:
            raise ValueError(f"a {kind} head: this medformer.py has twins of {', '.join(HEADS)} heads only")
        self.model = Medformer(config)
        self.kind = kind
        self.task = description["task"]
        self.class_names = description.get("class_names")
        self.input_shape = description.get("input_shape")
        self.head = HEADS[kind](self.model.config, **description["settings"])

    def _keys(self, images, keys):
        keys = [("other", "other")] * images.shape[0] if keys is None else list(keys)
        if len(keys) != images.shape[0]:
            raise ValueError(f"{len(keys)} keys for {images.shape[0]} images")
        return [(organ, modality, self.task) for organ, modality in keys]

    def _outputs(self, images, keys):
        return self.head(self.model, self.model(images, keys), images)

    def outputs(self, images, keys=None, overlap=0.25, mode="gaussian", sw_batch_size=1):
        """The head's raw outputs: class scores, segmentation logits [B,K,...], or images. A dense head's are blended
        over sliding windows of the training input's shape where the images have another."""
        keys = self._keys(images, keys)
        if not getattr(self.head, "dense", False):
            return self.head(self.model, self.model(images, keys))
        roi = self.input_shape[1:] if self.input_shape is not None else None
        if roi is None or list(images.shape[2:]) == list(roi):
            return self._outputs(images, keys)
        # One image at a time, each window read with its image's banks, as FineTuner.PredictSlidingWindow.
        return torch.cat([sliding_window_inference(images[i:i + 1], list(roi), sw_batch_size,
                                                   lambda windows, key=keys[i]: self._outputs(windows, [key] * windows.shape[0]),
                                                   overlap=overlap, mode=mode) for i in range(images.shape[0])])

    def probabilities(self, images, keys=None, **window):
        """Class probabilities: [B,K] for classification, [B,K,...] per pixel for segmentation."""
        outputs = self.outputs(images, keys, **window)
        return self.head.probabilities(outputs) if self.kind == "segmentation" else self.head.predict(outputs)

    def forward(self, images, keys=None, **window):
        return self.head.predict(self.outputs(images, keys, **window))
