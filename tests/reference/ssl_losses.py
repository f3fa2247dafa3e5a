#!/usr/bin/python3
"""Independent PyTorch references for pretrain/Objectives/Losses.cs, written from the papers' definitions
(SimCLR, BYOL, Barlow Twins, PixPro, MAE), deliberately by other routes than the C# code where one exists
(explicit sums, BatchNorm, unfold, loops over the patch grid, cdist).

Usage: ssl_losses.py DIR, where DIR/io.safetensors (written by tests/pretrain/LossesTests.cs) holds, for every
case listed in its metadata "cases" (a JSON list of {name, fn, args, inputs, grads, outputs}):
  NAME/in/X     the inputs,
  NAME/out/Y    our outputs,
  NAME/w/Y      the weights w of the test's objective sum over outputs of (Y * w).sum() (float outputs only),
  NAME/grad/X   our gradients of that objective with respect to the inputs listed in "grads".
Prints one JSON object: {NAME: {"out": {Y: error}, "grad": {X: error}}}, each error the largest absolute
difference over the largest reference magnitude (for bool and integer outputs: the number of differing elements).
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_spec  # noqa: E402


def load(path):
    _, _, metadata, entries, data = safetensors_spec.read(path)
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        torch_dtype = safetensors_spec.DTYPES[dtype][1]
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch_dtype).reshape(shape).clone()
    return metadata or {}, tensors


def pairwise_cosine(a, b):
    """[..., M, D] x [..., K, D] -> [..., M, K] by broadcasting torch's cosine_similarity."""
    return F.cosine_similarity(a.unsqueeze(-2), b.unsqueeze(-3), dim=-1)


def nt_xent(z1, z2, temperature):
    # SimCLR eq. (1): l(i, j) = -log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t)), averaged over all 2N anchors.
    z = torch.cat([z1, z2])
    total, count = z.shape[0], z.shape[0] // 2
    s = pairwise_cosine(z, z) / temperature
    loss = 0
    for i in range(total):
        j = (i + count) % total
        denominator = sum(torch.exp(s[i, k]) for k in range(total) if k != i)
        loss = loss - torch.log(torch.exp(s[i, j]) / denominator)
    return {"loss": loss / total}


def nt_xent_gathered(z1, z2, o1, o2, temperature, rank):
    # Two ranks: this one's views (z1, z2) and the other's (o1, o2), in rank order. The loss is eq. (1) over the
    # whole batch of 4N rows, averaged over this rank's 2N anchors only.
    local, other = torch.cat([z1, z2]), torch.cat([o1, o2])
    z = torch.cat([local, other] if rank == 0 else [other, local])
    block = local.shape[0]
    s = pairwise_cosine(z, z) / temperature
    loss = 0
    for a in range(block):
        i = rank * block + a
        j = rank * block + (a + block // 2) % block
        denominator = sum(torch.exp(s[i, k]) for k in range(z.shape[0]) if k != i)
        loss = loss - torch.log(torch.exp(s[i, j]) / denominator)
    return {"loss": loss / block}


def byol(online, target):
    return {"loss": (2 - 2 * F.cosine_similarity(online, target, dim=-1)).mean()}


def barlow_twins(z1, z2, lambd):
    n, d = z1.shape
    a = F.batch_norm(z1, None, None, training=True, eps=1e-5)
    b = F.batch_norm(z2, None, None, training=True, eps=1e-5)
    c = a.T @ b / n
    identity = torch.eye(d, dtype=c.dtype)
    weight = identity + lambd * (1 - identity)
    return {"loss": ((identity - c) ** 2 * weight).sum()}


def pixel_propagation(features, transformed, gamma):
    s = pairwise_cosine(features, features).clamp(min=0) ** gamma
    return {"y": torch.einsum("bij,bjd->bid", s, transformed)}


def pixel_contrast(propagated, target, positives):
    if not positives.any():
        return {"loss": 0 * propagated.sum()}
    return {"loss": -pairwise_cosine(propagated, target)[positives].mean()}


def positive_pairs(coordinates1, coordinates2, threshold):
    d = torch.cdist(coordinates1.transpose(1, 2), coordinates2.transpose(1, 2), compute_mode="donot_use_mm_for_euclid_dist")
    return {"positives": d < threshold}


def grid_cells(spatial, patch):
    """Patch-grid cells in row-major order, slowest axis first, each as a tuple of slices."""
    cells = [()]
    for size in spatial:
        cells = [cell + (slice(k * patch, (k + 1) * patch),) for cell in cells for k in range(size // patch)]
    return cells


def patchify(images, patch):
    spatial = images.shape[2:]
    channels_last = list(range(2, images.dim())) + [1]
    tokens = [images[(slice(None), slice(None)) + cell].permute(0, *channels_last).reshape(images.shape[0], -1)
              for cell in grid_cells(spatial, patch)]
    return {"patches": torch.stack(tokens, dim=1)}


def unpatchify(patches, image_shape, patch):
    batch, channels, spatial = image_shape[0], image_shape[1], image_shape[2:]
    channels_first = [0, len(spatial) + 1] + list(range(1, len(spatial) + 1))
    image = torch.zeros(image_shape, dtype=patches.dtype)
    for t, cell in enumerate(grid_cells(spatial, patch)):
        block = patches[:, t].reshape(batch, *([patch] * len(spatial)), channels).permute(*channels_first)
        image[(slice(None), slice(None)) + cell] = block
    return {"images": image}


def masked_reconstruction(predicted, target, mask, normalize_pixels):
    if normalize_pixels:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, unbiased=True, keepdim=True) + 1e-6).sqrt()
        target = (target - mean) / std
    per_patch = ((predicted - target) ** 2).mean(dim=-1)
    if not mask.any():
        return {"loss": 0 * predicted.sum()}
    return {"loss": per_patch[mask].mean()}


def keep_visible(tokens, mask):
    index = torch.stack([torch.nonzero(~row).flatten() for row in mask])
    visible = torch.stack([tokens[b, index[b]] for b in range(tokens.shape[0])])
    return {"visible": visible, "index": index}


REFERENCES = {
    "NtXent": nt_xent, "NtXentGathered": nt_xent_gathered, "Byol": byol, "BarlowTwins": barlow_twins, "PixelPropagation": pixel_propagation,
    "PixelContrast": pixel_contrast, "PositivePairs": positive_pairs, "Patchify": patchify,
    "Unpatchify": unpatchify, "MaskedReconstruction": masked_reconstruction, "KeepVisible": keep_visible,
}


def error(ours, reference):
    if not reference.is_floating_point():
        return float((ours != reference).sum())
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def main(directory):
    torch.set_num_threads(1)
    metadata, io = load(os.path.join(directory, "io.safetensors"))
    report = {}
    for case in json.loads(metadata["cases"]):
        name = case["name"]
        inputs = {x: io[f"{name}/in/{x}"].clone() for x in case["inputs"]}
        for x in case["grads"]:
            inputs[x].requires_grad_(True)
        outputs = REFERENCES[case["fn"]](**inputs, **case["args"])
        entry = {"out": {}, "grad": {}}
        objective = 0
        for y in case["outputs"]:
            entry["out"][y] = error(io[f"{name}/out/{y}"], outputs[y].detach())
            if outputs[y].is_floating_point():
                objective = objective + (outputs[y] * io[f"{name}/w/{y}"]).sum()
        if case["grads"]:
            objective.backward()
            for x in case["grads"]:
                grad = inputs[x].grad if inputs[x].grad is not None else torch.zeros_like(inputs[x])  # not in the graph
                entry["grad"][x] = error(io[f"{name}/grad/{x}"], grad)
        report[name] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
