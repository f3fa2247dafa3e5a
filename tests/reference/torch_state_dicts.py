#!/usr/bin/python3
"""State dicts written by torch.save (Debian's PyTorch 1.13), for the C# import tests (tests/tracking).

    torch_state_dicts.py DIR        write DIR/*.pt and DIR/expected.safetensors (every tensor, contiguous)
    torch_state_dicts.py model DIR  write DIR/twin.ckpt: the PyTorch twin (tiny config) in a Lightning-style
                                    checkpoint with DataParallel's "module." prefix, and DIR/twin.safetensors

Cases: float32, float16, bfloat16, int64 and bool tensors; a transposed view and two views of one storage (offset,
stride); a Parameter; a Lightning checkpoint ({"state_dict": ..., "optimizer_states": ..., "epoch": ...}); the
legacy (non-zip) format.
"""
import collections
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "reference"))
import safetensors_spec  # noqa: E402


def tensors():
    g = torch.Generator().manual_seed(5)
    base = torch.randn(4, 6, generator=g)
    sd = collections.OrderedDict()
    sd["layer.weight"] = torch.randn(3, 5, generator=g)
    sd["layer.half"] = torch.randn(7, generator=g).half()
    sd["layer.bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["layer.steps"] = torch.tensor([3, -1, 1 << 40], dtype=torch.int64)
    sd["layer.mask"] = torch.tensor([True, False, True])
    sd["shared.transposed"] = base.t()          # non-contiguous: stride (1, 6)
    sd["shared.row"] = base[2]                  # storage offset 12
    sd["shared.column"] = base[:, 3]            # offset 3, stride 6
    sd["scalar"] = torch.tensor(2.5)
    return sd


def main(argv):
    if argv[0] == "model":
        return model(argv[1])
    out = argv[0]
    sd = tensors()
    torch.save(sd, os.path.join(out, "mixed.pt"))
    torch.save(sd, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
    params = {"p.weight": torch.nn.Parameter(sd["layer.weight"].clone())}
    torch.save(params, os.path.join(out, "parameter.pth"))
    lightning = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.9.5",
        "state_dict": collections.OrderedDict(("model." + k, v) for k, v in sd.items()),
        "optimizer_states": [{"state": {0: {"step": torch.tensor(120.0), "exp_avg": torch.zeros(3, 5)}},
                              "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}],
        "lr_schedulers": [], "callbacks": {}, "hyper_parameters": {"lr": 1e-3, "name": "x", "flags": [True, None]},
    }
    torch.save(lightning, os.path.join(out, "lightning.ckpt"))
    safetensors_spec.write(os.path.join(out, "expected.safetensors"),
                           {k: v.contiguous() for k, v in sd.items()}, {}, None, True)
    print(json.dumps(sorted(os.listdir(out))))


def model(out):
    from medformer import Medformer
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    torch.manual_seed(3)
    twin = Medformer(config)
    with torch.no_grad():
        for p in twin.parameters():
            p.normal_()
    sd = twin.state_dict()
    wrapped = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
    wrapped["module.head.weight"] = torch.zeros(2, 2)   # a task head the encoder does not have
    torch.save({"state_dict": wrapped, "epoch": 1}, os.path.join(out, "twin.ckpt"))
    safetensors_spec.write(os.path.join(out, "twin.safetensors"), {k: v.contiguous() for k, v in sd.items()}, {}, None, True)
    print(json.dumps({"tensors": len(sd)}))


if __name__ == "__main__":
    main(sys.argv[1:])
