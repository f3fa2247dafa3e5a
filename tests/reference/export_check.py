#!/usr/bin/python3
"""Loads a `medformer export` folder the way its README tells a PyTorch user to, with the medformer.py shipped in it
and the from-spec safetensors reader (Debian has no safetensors package), and runs the model on the inputs the C#
test wrote to io.safetensors (x, keys in its metadata, and our output z).

Usage: export_check.py DIR. Prints one JSON object: dtypes, whether every tensor is stored contiguous (safetensors
always is), the keys missing or unexpected for load_state_dict, and the largest relative error against our output.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_spec  # noqa: E402


def load(path):
    _, _, metadata, entries, data = safetensors_spec.read(path)
    dtypes = sorted({dtype for _, dtype, _, _, _ in entries})
    tensors = {name: torch.frombuffer(bytearray(data[b:e]), dtype=safetensors_spec.DTYPES[dtype][1]).reshape(shape).clone()
               for name, dtype, shape, b, e in entries}
    return metadata or {}, tensors, dtypes


def main(directory):
    torch.set_num_threads(1)
    sys.path.insert(0, directory)  # the medformer.py the export ships
    from medformer import Medformer
    model = Medformer(os.path.join(directory, "config.json"))
    _, weights, dtypes = load(os.path.join(directory, "model.safetensors"))
    result = model.load_state_dict(weights, strict=False)
    model.eval()
    meta, io, _ = load(os.path.join(directory, "io.safetensors"))
    keys = [tuple(k) for k in json.loads(meta["keys"])]
    with torch.no_grad():
        z = model(io["x"], keys)
    error = float((z - io["z"]).abs().max() / io["z"].abs().max())
    print(json.dumps({"dtypes": dtypes, "tensors": len(weights), "missing": result.missing_keys,
                      "unexpected": result.unexpected_keys, "max_error": error,
                      "readme": os.path.exists(os.path.join(directory, "README.md"))}))


if __name__ == "__main__":
    main(sys.argv[1])
