"""Parity of model/MedformerModel.cs with its PyTorch twin (bench/reference/medformer.py).

Usage: medformer_parity.py DIR, where DIR holds a checkpoint (config.json, model.safetensors) and io.safetensors
(inputs, output weights w*, our outputs and gradients grad.<key>) written by the C# test. Prints one JSON object:
the largest relative error of the outputs and of the gradients, and any key whose gradient is missing or extra.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "reference"))
import safetensors_spec  # noqa: E402
from medformer import Medformer  # noqa: E402


def load(path):
    _, _, metadata, entries, data = safetensors_spec.read(path)
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        torch_dtype = safetensors_spec.DTYPES[dtype][1]
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch_dtype).reshape(shape).clone()
    return metadata or {}, tensors


def relative_error(ours, reference):
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def main(directory):
    torch.set_num_threads(1)
    model = Medformer(os.path.join(directory, "config.json"))
    _, weights = load(os.path.join(directory, "model.safetensors"))
    model.load_state_dict(weights, strict=True)
    meta, io = load(os.path.join(directory, "io.safetensors"))
    keys2 = [tuple(k) for k in json.loads(meta["keys2"])]
    keys3 = [tuple(k) for k in json.loads(meta["keys3"])]
    size = json.loads(meta["query_size"])

    z2 = model(io["x2"], keys2)
    z3 = model(io["x3"], keys3)
    out = model.decode(z2, model.position_queries(size))
    loss = (z2 * io["w2"]).sum() + (z3 * io["w3"]).sum() + (out * io["w4"]).sum()
    loss.backward()

    errors = {name: relative_error(io[name], ref) for name, ref in (("z2", z2), ("z3", z3), ("out", out))}
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    theirs = {name[len("grad."):] for name in io if name.startswith("grad.")}
    grad_errors = {name: relative_error(io["grad." + name], g) for name, g in grads.items() if name in theirs}
    worst = max(grad_errors, key=grad_errors.get)
    print(json.dumps({
        "outputs": errors,
        "max_output_error": max(errors.values()),
        "max_grad_error": grad_errors[worst],
        "worst_grad": worst,
        "grads_compared": len(grad_errors),
        "missing_in_ours": sorted(set(grads) - theirs),
        "extra_in_ours": sorted(theirs - set(grads)),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
