#!/usr/bin/python3
"""Loads a `medformer export` folder of a model fine-tuned with a dense head (segmentation, restoration,
super-resolution, translation) the way its README tells a PyTorch user to: the README's python block is run as it
stands, in the folder, with the medformer.py and safetensors_load.py shipped there, on the images the C# test wrote to
io.safetensors: x (the input), y (what `medformer predict` wrote for it: the label map or the images) and z (our raw
outputs before the last step: logits or images, blended over the same sliding windows).

Usage: export_dense_check.py DIR. Prints one JSON object: the README's variable (mask or restored), its shape, its
largest absolute difference from y, and for a mask the pixels that differ from ours (all of them, and those where our
top two logits are more than 2e-4 apart, so not a tie within the tolerance); FineTuned.outputs' largest absolute
difference from z; whether sliding windows were used; with model.pt, FineTuned loaded from it (strict) and its
difference from y and from the README's result.
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
    import medformer
    io = load_file("io.safetensors")
    with open("README.md") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    scope = {"images": io["x"]}
    exec(blocks[0], scope)  # noqa: S102 - the README's own lines
    name = "mask" if "mask" in scope else "restored"
    model = scope["model"]
    ours, expected = scope[name], io["y"]
    report = {"variable": name, "shape": list(ours.shape), "dtype": str(ours.dtype),
              "readme_error": float((ours.double() - expected.double()).abs().max()),
              "windows": model.input_shape is not None and list(io["x"].shape[2:]) != list(model.input_shape[1:])}
    with torch.no_grad():
        outputs = model.outputs(io["x"])
    report["outputs_shape"] = list(outputs.shape)
    report["outputs_error"] = float((outputs - io["z"]).abs().max())
    report["outputs_scale"] = float(io["z"].abs().max())
    if name == "mask":
        differs = ours.long() != expected.long()
        top2 = io["z"].topk(2, dim=1).values
        beyond_ties = differs & ((top2[:, :1] - top2[:, 1:2]) > 2e-4)
        report.update({"mask_mismatches": int(differs.sum()), "mask_mismatches_beyond_ties": int(beyond_ties.sum()),
                       "probabilities_error": float((scope["probabilities"] - io["z"].softmax(1)).abs().max()),
                       "classes_seen": sorted(int(c) for c in ours.unique())})
    if os.path.exists("model.pt"):
        fresh = medformer.FineTuned("config.json", "head.json").eval()
        result = fresh.load_state_dict(torch.load("model.pt"), strict=False)
        with torch.no_grad():
            out = fresh(io["x"])
        report.update({"pt_missing": result.missing_keys, "pt_unexpected": result.unexpected_keys,
                       "pt_error": float((out.double() - expected.double()).abs().max()),
                       "pt_vs_readme": float((out.double() - ours.double()).abs().max())})
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
