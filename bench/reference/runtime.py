"""PyTorch 1.13 side of bench/run runtime: GEMM rates, one tiny op per call, a transformer block's training step."""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def median_seconds(body, warmup, repeats):
    for _ in range(warmup):
        body()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2]


class TransformerBlock(nn.Module):
    """Twin of bench/Benchmarks/TransformerBlock.cs; 1.13 has no scaled_dot_product_attention, so it is written out."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)).softmax(dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--gemm", type=int, default=2048)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 GEMM (a CPU without fast bf16 emulates it, for minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {}

    n = args.gemm
    for name, dtype in (("fp32", torch.float32),) + ((() if args.no_bf16 else (("bf16", torch.bfloat16),))):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        seconds = median_seconds(lambda: a.mm(b), 2, 7)
        result[f"gemm_{name}_gflops"] = 2.0 * n ** 3 / seconds / 1e9

    a, b = torch.zeros(16), torch.ones(16)

    def tiny():
        for _ in range(args.calls):
            a.add_(b)
    result["tiny_op_us"] = median_seconds(tiny, 1, 5) / args.calls * 1e6

    block = TransformerBlock(256, 4)
    optimizer = torch.optim.AdamW(block.parameters(), lr=1e-4)
    x, target = torch.randn(64, 64, 256), torch.randn(64, 64, 256)

    def step():
        F.mse_loss(block(x), target).backward()
        optimizer.step()
        optimizer.zero_grad()
    result["block_step_fp32_s"] = median_seconds(step, 3, 10)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
