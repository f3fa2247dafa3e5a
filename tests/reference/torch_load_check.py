#!/usr/bin/python3
"""Loads a state_dict written by Medformer (tracking/Interop/TorchSave.cs) or TorchSharp.PyBridge with torch.load and
compares it with the same tensors in a safetensors file (read by the from-spec reader: Debian has no safetensors).

Usage: torch_load_check.py FILE.pt EXPECTED.safetensors. Prints one JSON object: the type of the loaded object, its
keys in order, and the names whose dtype, shape or bytes differ from the expected ones.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_spec  # noqa: E402


def main(pt, expected_path):
    loaded = torch.load(pt, map_location="cpu")
    _, _, _, entries, data = safetensors_spec.read(expected_path)
    differ = []
    for name, dtype, shape, begin, end in entries:
        tensor = loaded.get(name)
        if tensor is None or tensor.dtype != safetensors_spec.DTYPES[dtype][1] or list(tensor.shape) != shape:
            differ.append(name)
            continue
        raw = bytes(tensor.contiguous().reshape(-1).view(torch.uint8).tolist()) if tensor.numel() else b""
        if raw != data[begin:end]:
            differ.append(name)
    print(json.dumps({"type": type(loaded).__module__ + "." + type(loaded).__name__, "keys": list(loaded.keys()),
                      "expected": len(entries), "differ": differ}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
