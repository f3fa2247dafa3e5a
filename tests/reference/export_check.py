#!/usr/bin/python3
"""Loads a `medformer export` folder the way its README tells a PyTorch user to: the README's python block is run as
it stands, in the folder, with the medformer.py and safetensors_load.py shipped there (Debian's PyTorch 1.13 has no
safetensors package), on the images the C# test wrote to io.safetensors (x, and our output y). With model.pt there,
a fresh model also loads it with torch.load (strict) and runs on the same images.

Usage: export_check.py DIR. Prints one JSON object: the README's variable checked (latents or probabilities), its
largest error relative to ours, the dtypes and count of model.safetensors, and for model.pt its keys' count and its
error; the keys missing or unexpected for load_state_dict(strict=False) of each file.
"""
import json
import os
import re
import sys

import torch


def main(directory):
    torch.set_num_threads(1)
    os.chdir(directory)
    sys.path.insert(0, directory)
    from safetensors_load import load_file  # the shipped reader
    io = load_file("io.safetensors")
    with open("README.md") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    scope = {"images": io["x"]}
    exec(blocks[0], scope)  # noqa: S102 - the README's own lines
    name = "probabilities" if "probabilities" in scope else "latents"
    scale = float(io["y"].abs().max())
    report = {"variable": name, "readme_error": float((scope[name] - io["y"]).abs().max()) / scale,
              "shape": list(scope[name].shape), "tensors": len(load_file("model.safetensors")),
              "dtypes": sorted({str(t.dtype) for t in load_file("model.safetensors").values()})}
    if os.path.exists("model.pt"):
        import medformer
        state = torch.load("model.pt")
        fresh = (medformer.FineTuned("config.json", "head.json") if name == "probabilities" else medformer.Medformer("config.json")).eval()
        result = fresh.load_state_dict(state, strict=False)
        keys = [("chest", "xray")] * io["x"].shape[0] if name == "probabilities" else [("chest", "xray", "classification")] * io["x"].shape[0]
        with torch.no_grad():
            out = fresh(io["x"], keys)
        report.update({"pt_type": type(state).__name__, "pt_tensors": len(state), "pt_missing": result.missing_keys,
                       "pt_unexpected": result.unexpected_keys, "pt_error": float((out - io["y"]).abs().max()) / scale})
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
