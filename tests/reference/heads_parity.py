"""Parity of heads/ClassificationHead.cs and heads/SegmentationHead.cs (3D) with the head twins that bench/run heads
times (bench/reference/finetune.py).

Usage: heads_parity.py DIR, where DIR/classification and DIR/segmentation each hold config.json, model.safetensors,
head.safetensors and io.safetensors (images, labels, our loss and gradients grad.<key>) written by the C# test.
Prints one JSON object: per head, the relative error of the loss and the largest of the gradients, and any key whose
gradient is missing or extra.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "reference"))
from finetune import ClassificationHead, SegmentationHead  # noqa: E402
from medformer import Medformer  # noqa: E402
from medformer_parity import load, relative_error  # noqa: E402


def check(folder, kind):
    model = Medformer(os.path.join(folder, "config.json"))
    model.load_state_dict(load(os.path.join(folder, "model.safetensors"))[1], strict=True)
    meta, io = load(os.path.join(folder, "io.safetensors"))
    classes = int(meta["classes"])
    head = ClassificationHead(model.config, classes) if kind == "classification" else SegmentationHead(model, classes)
    # Ours also holds a 2D neighbourhood projection, which 3D crops never use.
    weights = {k: v for k, v in load(os.path.join(folder, "head.safetensors"))[1].items() if not k.startswith("readout.pixels_2d.")}
    head.load_state_dict(weights, strict=True)
    keys = [tuple(k) for k in json.loads(meta["keys"])]
    loss = head.loss(model, model(io["images"], keys), io["images"], io["labels"])
    loss.backward()
    grads = {"model." + n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    grads.update({"head." + n: p.grad for n, p in head.named_parameters() if p.grad is not None})
    ours = {name[len("grad."):] for name in io if name.startswith("grad.")}
    compared = sorted(ours & set(grads))
    return {
        "loss": loss.item(),
        "loss_error": relative_error(io["loss"], loss.detach()),
        "max_grad_error": max(relative_error(io["grad." + name], grads[name]) for name in compared),
        "grads_compared": len(compared),
        "missing_in_ours": sorted(set(grads) - ours),
        "extra_in_ours": sorted(ours - set(grads)),
    }


def main(directory):
    torch.set_num_threads(1)
    print(json.dumps({kind: check(os.path.join(directory, kind), kind) for kind in ("classification", "segmentation")}))


if __name__ == "__main__":
    main(sys.argv[1])
