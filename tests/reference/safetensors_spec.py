#!/usr/bin/python3
"""A safetensors reader and writer written from the format's specification alone (struct + json + torch), the
reference the C# tests check runtime/Safetensors against. No `safetensors` package is used on purpose.

    safetensors_spec.py read PATH...            validate each file against the spec; print its manifest
    safetensors_spec.py write DIR               write the fixed case set to DIR/padded.safetensors (header padded
                                                to a multiple of 8) and DIR/unpadded.safetensors (data starting at
                                                an odd offset); print their manifests. Data is laid out by name, so
                                                some tensors start misaligned for their type either way

A manifest is one JSON object per file: {"path", "header_length", "padded", "metadata", "order" (names in data
order), "tensors": {name: {"dtype", "shape", "data_offsets", "hex", "values"}}}. "values" is the tensor read
through torch, flattened, every value a string (Python's repr: exact for every float; complex as [re, im]), or
null for the dtypes torch 1.13 lacks.
"""
import json
import math
import os
import struct
import sys

import torch

MAX_HEADER = 100_000_000

# dtype string -> (bits per element, torch dtype or None when torch 1.13 has no such type)
DTYPES = {
    "BOOL": (8, torch.bool), "U8": (8, torch.uint8), "I8": (8, torch.int8), "I16": (16, torch.int16),
    "I32": (32, torch.int32), "I64": (64, torch.int64), "F16": (16, torch.float16), "BF16": (16, torch.bfloat16),
    "F32": (32, torch.float32), "F64": (64, torch.float64), "C64": (64, torch.complex64),
    "U16": (16, None), "U32": (32, None), "U64": (64, None),
    "F8_E4M3": (8, None), "F8_E5M2": (8, None), "F8_E8M0": (8, None), "F8_E4M3FNUZ": (8, None), "F8_E5M2FNUZ": (8, None),
    "F4": (4, None), "F6_E2M3": (6, None), "F6_E3M2": (6, None),
}
TORCH_TO_DTYPE = {t: name for name, (_, t) in DTYPES.items() if t is not None}


class Malformed(Exception):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise Malformed(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _size(value, what):
    # bool is an int in Python; JSON true is not a size.
    if type(value) is not int or value < 0:
        raise Malformed(f"{what} is {value!r}, not a non-negative integer")
    return value


def read(path):
    """Parses and validates per the spec; returns (header_length, metadata, [(name, dtype, shape, begin, end)], data)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise Malformed("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER:
        raise Malformed("header too large")
    if 8 + n > len(blob):
        raise Malformed("header length exceeds the file")
    raw = blob[8:8 + n]
    if not raw.startswith(b"{"):
        raise Malformed("header does not begin with {")
    text = raw.decode("utf-8")  # strict: invalid UTF-8 raises
    header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=lambda c: (_ for _ in ()).throw(Malformed(c)))
    if not isinstance(header, dict):
        raise Malformed("header is not an object")
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise Malformed("__metadata__ is not a map of strings")
    entries = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise Malformed(f"{name}: entry must hold exactly dtype, shape, data_offsets")
        dtype = entry["dtype"]
        if dtype not in DTYPES:
            raise Malformed(f"{name}: unknown dtype {dtype!r}")
        shape = [_size(d, f"{name}: shape") for d in entry["shape"]]
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise Malformed(f"{name}: data_offsets must be [begin, end]")
        begin, end = (_size(o, f"{name}: data_offsets") for o in offsets)
        bits = math.prod(shape) * DTYPES[dtype][0]
        if bits % 8 or end < begin or end - begin != bits // 8:
            raise Malformed(f"{name}: data_offsets [{begin}, {end}] do not match {dtype} {shape}")
        entries.append((name, dtype, shape, begin, end))
    entries.sort(key=lambda e: (e[3], e[4]))
    cursor = 0
    for name, _, _, begin, end in entries:
        if begin != cursor:
            raise Malformed(f"{name}: begins at {begin}, expected {cursor} (hole or overlap)")
        cursor = end
    if cursor != len(data):
        raise Malformed(f"tensors cover {cursor} bytes of a {len(data)}-byte data buffer")
    return n, raw, metadata, entries, data


def _repr(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, complex):
        return [repr(value.real), repr(value.imag)]
    return repr(value)


def _values(dtype, shape, chunk):
    torch_dtype = DTYPES[dtype][1]
    if torch_dtype is None:
        return None
    if len(chunk) == 0:
        return []
    tensor = torch.frombuffer(bytearray(chunk), dtype=torch_dtype).reshape(shape)
    return [_repr(v) for v in tensor.flatten().tolist()]


def manifest(path):
    n, raw, metadata, entries, data = read(path)
    stripped = raw.rstrip(b" ")
    return {
        "path": path,
        "header_length": n,
        "padded": n % 8 == 0 and stripped.endswith(b"}"),
        "metadata": metadata,
        "order": [e[0] for e in entries],
        "tensors": {
            name: {
                "dtype": dtype, "shape": shape, "data_offsets": [begin, end],
                "hex": data[begin:end].hex(), "values": _values(dtype, shape, data[begin:end]),
            }
            for name, dtype, shape, begin, end in entries
        },
    }


def _le_bytes(tensor):
    tensor = tensor.contiguous().reshape(-1)
    # Reinterpreted as bytes in torch, not numpy, which lacks bfloat16.
    return bytes(tensor.view(torch.uint8).tolist()) if tensor.numel() else b""


def write(path, tensors, raw, metadata, pad_to_8):
    """Lays data out by name and writes the header's keys in reverse order, to differ from the C# writer on purpose."""
    items = []
    for name, tensor in tensors.items():
        items.append((name, TORCH_TO_DTYPE[tensor.dtype], list(tensor.shape), _le_bytes(tensor)))
    for name, (dtype, shape, blob) in raw.items():
        assert math.prod(shape) * DTYPES[dtype][0] == 8 * len(blob), name
        items.append((name, dtype, shape, blob))
    items.sort(key=lambda item: item[0])
    header, offset = {}, 0
    for name, dtype, shape, blob in items:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
    ordered = dict(reversed(list(header.items())))
    if metadata is not None:
        ordered = {"__metadata__": metadata, **ordered}
    text = json.dumps(ordered, ensure_ascii=False).encode("utf-8")
    if pad_to_8:
        text += b" " * (-len(text) % 8)
    elif len(text) % 8 == 0:
        text += b" " * 3  # so the data buffer starts at an odd offset
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, blob in items:
            f.write(blob)


def cases():
    """Every dtype torch 1.13 has, with the awkward values of each, plus 0-d, empty and the raw-only dtypes."""
    inf, nan = float("inf"), float("nan")
    floats = [0.0, -0.0, 1.0, -1.5, 3.140625, 65504.0, 6.103515625e-05, 5.960464477539063e-08, inf, -inf, nan, 1e-3]
    tensors = {
        "bool": torch.tensor([True, False, True, True, False]),
        "u8": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
        "i8": torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8),
        "i16": torch.tensor([[-32768, -1], [0, 32767]], dtype=torch.int16),
        "i32": torch.tensor([-2147483648, -7, 0, 2147483647], dtype=torch.int32),
        "i64": torch.tensor([-9223372036854775808, -3, 0, 9007199254740993, 9223372036854775807], dtype=torch.int64),
        "f16": torch.tensor(floats, dtype=torch.float16),
        "bf16": torch.tensor(floats + [3.3895313892515355e38, 9.183549615799121e-41], dtype=torch.bfloat16),
        "f32": torch.tensor(floats + [3.4028234663852886e38, 1.401298464324817e-45, 0.1], dtype=torch.float32).reshape(3, 5),
        "f64": torch.tensor(floats + [1.7976931348623157e308, 5e-324, 0.1], dtype=torch.float64),
        "c64": torch.tensor([complex(1.5, -2.0), complex(0.0, -0.0), complex(inf, nan), complex(0.1, 1e-40)], dtype=torch.complex64),
        "scalar_f32": torch.tensor(2.5, dtype=torch.float32),
        "scalar_i64": torch.tensor(-42, dtype=torch.int64),
        "empty_f32": torch.zeros(0, dtype=torch.float32),
        "empty_3d_bf16": torch.zeros(2, 0, 3, dtype=torch.bfloat16),
        "odd_f64": torch.tensor([1.25, -2.5, 1e300], dtype=torch.float64),
        "odd_u8": torch.tensor([1, 2, 3], dtype=torch.uint8),
    }
    raw = {
        "raw_u16": ("U16", [3], struct.pack("<3H", 0, 1, 65535)),
        "raw_u32": ("U32", [2], struct.pack("<2I", 4294967295, 305419896)),
        "raw_u64": ("U64", [2], struct.pack("<2Q", 18446744073709551615, 1)),
        "raw_f8_e4m3": ("F8_E4M3", [2, 2], bytes([0x00, 0x38, 0x7E, 0xFF])),
        "raw_f8_e5m2": ("F8_E5M2", [3], bytes([0x3C, 0x7B, 0x80])),
        "raw_f8_e8m0": ("F8_E8M0", [2], bytes([0x7F, 0xFF])),
        "raw_f8_e4m3fnuz": ("F8_E4M3FNUZ", [1], bytes([0x40])),
        "raw_f8_e5m2fnuz": ("F8_E5M2FNUZ", [1], bytes([0x41])),
        "raw_f4": ("F4", [4], bytes([0x21, 0xF7])),
        "raw_f6_e2m3": ("F6_E2M3", [4], bytes([0x12, 0x34, 0x56])),
        "raw_f6_e3m2": ("F6_E3M2", [2, 2], bytes([0xAB, 0xCD, 0xEF])),
        "raw_empty_u16": ("U16", [0, 4], b""),
    }
    metadata = {"format": "pt", "note": "naïve — ünïcode ✓ \"quoted\" \\ back\nslash", "": "empty key"}
    return tensors, raw, metadata


def main(argv):
    if len(argv) >= 2 and argv[0] == "read":
        print(json.dumps([manifest(p) for p in argv[1:]]))
    elif len(argv) == 2 and argv[0] == "write":
        tensors, raw, metadata = cases()
        paths = [os.path.join(argv[1], "padded.safetensors"), os.path.join(argv[1], "unpadded.safetensors")]
        write(paths[0], tensors, raw, metadata, pad_to_8=True)
        write(paths[1], tensors, raw, metadata, pad_to_8=False)
        print(json.dumps([manifest(p) for p in paths]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Malformed as e:
        print(f"malformed: {e}", file=sys.stderr)
        sys.exit(1)
