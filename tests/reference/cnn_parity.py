"""Parity of bench/Experiments/SmallCnn.cs with its PyTorch twin (bench/reference/cnn.py).

Usage: cnn_parity.py DIR, where DIR/cnn.safetensors holds the C# model's weights (their state_dict keys), the batch
(io.images, io.labels), our loss (io.loss) and gradients (grad.<key>), written by the C# test. Prints one JSON object:
our loss, the twin's, their difference, the largest relative gradient error, and any key missing on either side.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "reference"))
import safetensors_spec  # noqa: E402
from cnn import SmallCnn, loss  # noqa: E402


def main(directory):
    torch.set_num_threads(1)
    _, _, _, entries, data = safetensors_spec.read(os.path.join(directory, "cnn.safetensors"))
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=safetensors_spec.DTYPES[dtype][1]).reshape(shape).clone()
    images, labels = tensors["io.images"], tensors["io.labels"]
    weights = {k: v for k, v in tensors.items() if not k.startswith(("io.", "grad."))}
    model = SmallCnn(images.shape[1], weights["classifier.weight"].shape[0], images.dim() - 2)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    value = loss(model, images, labels)
    value.backward()
    errors = {}
    for name, p in model.named_parameters():
        ours = tensors.get("grad." + name)
        if ours is not None:
            errors[name] = float((ours - p.grad).abs().max() / p.grad.abs().max().clamp_min(1e-12))
    print(json.dumps({
        "ours": float(tensors["io.loss"]), "twin": float(value), "loss_error": abs(float(tensors["io.loss"]) - float(value)),
        "max_grad_error": max(errors.values()), "grads_compared": len(errors),
        "missing": sorted(missing), "unexpected": sorted(unexpected),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
