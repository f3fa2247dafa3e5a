"""The PyTorch twin of bench/Experiments/SmallCnn.cs: the small CNN `bench/run pays` trains from scratch beside
Medformer (three 3x3 convolutions of 32, 64 and 128 channels, each with batch norm and ReLU, 2x max-pools after the
first two, a global average and a linear classifier). Same modules, same state_dict keys (features.0/4/8 the
convolutions, features.1/5/9 the norms, classifier), same maths."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCnn(nn.Module):
    def __init__(self, in_channels, classes, axes=2):
        super().__init__()
        if axes not in (2, 3):
            raise ValueError(f"SmallCnn: spatial axes must be 2 or 3, not {axes}")
        conv = nn.Conv2d if axes == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if axes == 2 else nn.BatchNorm3d
        pool = nn.MaxPool2d if axes == 2 else nn.MaxPool3d
        self.features = nn.Sequential(
            conv(in_channels, 32, kernel_size=3, padding=1, bias=False), norm(32), nn.ReLU(), pool(2),
            conv(32, 64, kernel_size=3, padding=1, bias=False), norm(64), nn.ReLU(), pool(2),
            conv(64, 128, kernel_size=3, padding=1, bias=False), norm(128), nn.ReLU())
        self.classifier = nn.Linear(128, classes)

    def forward(self, images):
        return self.classifier(self.features(images).flatten(2).mean(2))


def loss(model, images, labels):
    """Mean cross-entropy of a labelled batch (CnnTrainer.Loss)."""
    return F.cross_entropy(model(images), labels)
