"""PyTorch 1.13 side of bench/run data: load + two-view augmentation of 28x28 uint8 images (MedMNIST's layout, in
memory), and random 96^3 crops from memory-mapped CT volumes, both through torch's DataLoader with worker processes."""
import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def resized_crop(image, size, gen):
    """torchvision's RandomResizedCrop rule (scale 0.35-1, ratio 3/4-4/3), bilinear, align_corners=False."""
    _, h, w = image.shape
    area = h * w
    for _ in range(10):
        target = area * torch.empty(1).uniform_(0.35, 1.0, generator=gen).item()
        ratio = float(np.exp(torch.empty(1).uniform_(np.log(3 / 4), np.log(4 / 3), generator=gen).item()))
        cw, ch = int(round((target * ratio) ** 0.5)), int(round((target / ratio) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            crop = image[:, top:top + ch, left:left + cw]
            return F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def augment(image, gen):
    x = resized_crop(image, 28, gen)
    for axis in (1, 2):
        if torch.rand(1, generator=gen).item() < 0.5:
            x = x.flip(axis)
    if torch.rand(1, generator=gen).item() < 0.8:
        x = x * (1 + torch.empty(1).uniform_(-0.2, 0.2, generator=gen).item())
    if torch.rand(1, generator=gen).item() < 0.8:
        x = x + torch.empty(1).uniform_(-0.2, 0.2, generator=gen).item()
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x + torch.randn(x.shape, generator=gen) * 0.05
    return x


class TwoViews(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        image = torch.from_numpy(self.images[index]).float().div_(255).unsqueeze(0)
        return augment(image, gen), augment(image, gen)


class Crops(Dataset):
    def __init__(self, path, count, size):
        self.volumes = np.memmap(path, dtype=np.float32, mode="r", shape=(count, size, size, size))
        self.size = size

    def __len__(self):
        return 1 << 20

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        v = int(torch.randint(0, self.volumes.shape[0], (1,), generator=gen))
        z, y, x = (int(torch.randint(0, self.size - 96 + 1, (1,), generator=gen)) for _ in range(3))
        crop = torch.from_numpy(np.ascontiguousarray(self.volumes[v, z:z + 96, y:y + 96, x:x + 96])).unsqueeze(0)
        for axis in (1, 2, 3):
            if torch.rand(1, generator=gen).item() < 0.5:
                crop = crop.flip(axis)
        return crop * (1 + torch.empty(1).uniform_(-0.1, 0.1, generator=gen).item())


def rate(loader, batches, per_batch):
    it = iter(loader)
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * per_batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--volume", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)  # per worker process, as DataLoader workers run
    images = np.random.default_rng(0).integers(0, 256, size=(4000, 28, 28), dtype=np.uint8)
    loader = DataLoader(TwoViews(images), batch_size=64, shuffle=True, num_workers=args.workers, persistent_workers=True)
    two_view = rate(loader, args.batches, 64)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ct.f32")
        count = 6
        np.random.default_rng(1).standard_normal((count, args.volume, args.volume, args.volume), dtype=np.float32).tofile(path)
        crops = DataLoader(Crops(path, count, args.volume), batch_size=2, num_workers=args.workers, persistent_workers=True)
        crop_rate = rate(crops, max(10, args.batches // 4), 2)
    print(json.dumps({"two_view_samples_per_s": two_view, "ct_crops_per_s": crop_rate,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
