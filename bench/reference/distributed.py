"""All-reduce bandwidth of torch.distributed's Gloo backend (Debian's PyTorch 1.13), the reference for bench/run distributed.

Two processes on 127.0.0.1; for each size, float32 all_reduce (sum) in place: warm-up, then timed repeats; rank 0
prints one JSON object: sizes in bytes and the algorithm bandwidth (bytes / seconds per all-reduce) in GB/s.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank, world, port, sizes, seconds, threads, queue):
    torch.set_num_threads(threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rates = []
    for size in sizes:
        x = torch.ones(size // 4)
        for _ in range(3):
            dist.all_reduce(x)
        # As many repeats as fit in `seconds` (decided on rank 0's estimate, shared so every rank runs the same count).
        start = time.perf_counter()
        dist.all_reduce(x)
        estimate = torch.tensor([time.perf_counter() - start])
        dist.broadcast(estimate, 0)
        repeats = max(3, min(1000, int(seconds / max(estimate.item(), 1e-6))))
        dist.barrier()
        start = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(x)
        elapsed = (time.perf_counter() - start) / repeats
        rates.append(size / elapsed / 1e9)
    if rank == 0:
        queue.put(rates)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4096,65536,1048576,16777216,67108864")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=29871)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, 2, args.port, sizes, args.seconds, args.threads, queue)) for r in range(2)]
    for p in procs:
        p.start()
    rates = queue.get(timeout=600)
    for p in procs:
        p.join()
    print(json.dumps({"sizes": sizes, "gbps": rates, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
