"""A safetensors reader in plain Python and PyTorch (struct + json + torch), for a PyTorch without the `safetensors`
package (Debian's python3-torch has none). Shipped by `medformer export`; written from the format's specification:
8 bytes little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the data.

    from safetensors_load import load_file
    state_dict = load_file("model.safetensors")      # as safetensors.torch.load_file
"""
import json
import struct

import torch

DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
          "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


def load_file(path):
    """The file's tensors by name (CPU, contiguous, each its own copy)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: the header length {n} runs past the end of the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, entry in header.items():
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: {name} is {entry['dtype']}, which this reader does not take")
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: {name}'s data_offsets [{begin}, {end}] fall outside the data")
        shape = entry["shape"]
        if begin == end:
            tensors[name] = torch.zeros(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
    return tensors
