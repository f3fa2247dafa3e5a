#!/usr/bin/python3
"""Reference values for eval/Metrics (tests/eval/MetricsTests.cs keeps them): computed once with Debian's
scikit-learn 1.2, scikit-image 0.19 and SciPy 1.10 on fixed inputs that the C# tests rebuild bit for bit from the
same integer generator (Lcg below: values k / 2^31, exact in float64 on both sides).

- accuracy and AUC per MedMNIST task type, as MedMNIST v3's medmnist/evaluator.py getACC / getAUC define them
  (restated here with scikit-learn's roc_auc_score and accuracy_score);
- top-k accuracy: sklearn.metrics.top_k_accuracy_score;
- Dice and IoU per class: sklearn.metrics.f1_score / jaccard_score on each class's binary mask (NaN where the
  ground truth lacks the class, our convention, which is MONAI's ignore_empty=True);
- 95% Hausdorff distance: MONAI's compute_hausdorff_distance(percentile=95, directed=False) restated with SciPy as
  MONAI computes it: edges = mask XOR binary_erosion(mask) (cross structuring element, outside = background),
  distances = distance_transform_edt(~edges_gt, sampling=spacing)[edges_pred], the 95th percentile (linear) of
  each direction, the larger of the two;
- MSE, PSNR: skimage.metrics.mean_squared_error / peak_signal_noise_ratio(data_range=...);
- SSIM: skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=...), 2D and 3D;
- the restoration score 100 * (1 - metric(restored, full) / metric(low, full)) for MSE and 1 - SSIM.

Usage: /usr/bin/python3 tests/reference/eval_metrics.py   (prints one JSON object)
"""
import json

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, roc_auc_score, top_k_accuracy_score


class Lcg:
    """x <- (1103515245 x + 12345) mod 2^31; uniform() = x / 2^31, integers(n) = (x >> 16) mod n (the C# tests' Lcg)."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (1103515245 * self.state + 12345) % (1 << 31)
        return self.state

    def uniform(self, *shape):
        return np.array([self.next() / float(1 << 31) for _ in range(int(np.prod(shape)))]).reshape(shape)

    def integers(self, high, *shape):
        return np.array([(self.next() >> 16) % high for _ in range(int(np.prod(shape)))], dtype=np.int64).reshape(shape)


def medmnist_auc(y_true, y_score, task):
    if task == "multi-label":
        return float(np.mean([roc_auc_score(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]))
    if task == "binary-class":
        return float(roc_auc_score(y_true, y_score[:, -1]))
    return float(np.mean([roc_auc_score((y_true == i).astype(float), y_score[:, i]) for i in range(y_score.shape[1])]))


def medmnist_acc(y_true, y_score, task, threshold=0.5):
    if task == "multi-label":
        predicted = y_score > threshold
        return float(np.mean([accuracy_score(y_true[:, i], predicted[:, i]) for i in range(y_true.shape[1])]))
    if task == "binary-class":
        return float(accuracy_score(y_true, y_score[:, -1] > threshold))
    return float(accuracy_score(y_true, np.argmax(y_score, axis=-1)))


def classification():
    out = {}
    # multi-class, 5 classes, 40 samples; scores quantised to eighths so that AUC meets ties
    g = Lcg(11)
    labels = g.integers(5, 40)
    scores = np.floor(g.uniform(40, 5) * 8) / 8
    out["multiclass"] = {"auc": medmnist_auc(labels, scores, "multi-class"), "acc": medmnist_acc(labels, scores, "multi-class")}
    # top-k on unquantised scores (no ties)
    g = Lcg(12)
    labels = g.integers(5, 40)
    scores = g.uniform(40, 5)
    out["topk"] = {str(k): float(top_k_accuracy_score(labels, scores, k=k, labels=list(range(5)))) for k in (1, 2, 3)}
    # binary-class: scores [N,2] (the positive column is the last); one score exactly 0.5 (predicted negative)
    g = Lcg(13)
    labels = g.integers(2, 30)
    scores = g.uniform(30, 2)
    scores[3, 1] = 0.5
    out["binary"] = {"auc": medmnist_auc(labels, scores, "binary-class"), "acc": medmnist_acc(labels, scores, "binary-class")}
    # multi-label: 4 labels, 30 samples; exact 0.5 scores count as negative (MedMNIST: score > threshold)
    g = Lcg(14)
    labels = g.integers(2, 30, 4)
    scores = g.uniform(30, 4)
    scores[0, 0] = 0.5
    scores[5, 2] = 0.5
    out["multilabel"] = {"auc": medmnist_auc(labels, scores, "multi-label"), "acc": medmnist_acc(labels, scores, "multi-label")}
    return out


def overlap():
    # 3 classes on a 12x10 map; the ground truth has no class 2 (NaN)
    g = Lcg(21)
    truth = g.integers(2, 12, 10)
    predicted = g.integers(3, 12, 10)
    dice, iou = [], []
    for c in range(3):
        t, p = (truth == c).ravel(), (predicted == c).ravel()
        if not t.any():
            dice.append(None)
            iou.append(None)
            continue
        dice.append(float(f1_score(t, p)))
        iou.append(float(jaccard_score(t, p)))
    return {"dice": dice, "iou": iou}


def edges(mask):
    return mask ^ binary_erosion(mask)


def directed_percentile(pred, gt, spacing, percentile):
    distances = distance_transform_edt(~edges(gt), sampling=spacing)[edges(pred)]
    return float(np.percentile(distances, percentile))


def hd95(pred, gt, spacing):
    return max(directed_percentile(pred, gt, spacing, 95), directed_percentile(gt, pred, spacing, 95))


def ellipse(shape, center, radii):
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((x - c) / r) ** 2 for x, c, r in zip(grid, center, radii)) <= 1.0


def hausdorff():
    out = {}
    gt = ellipse((40, 36), (18, 17), (11, 8))
    pred = ellipse((40, 36), (20, 15), (9, 10))
    pred[2:5, 30:34] = True  # a stray blob far from the truth drives the tail
    out["2d"] = hd95(pred, gt, (0.8, 1.3))
    out["2d_unit"] = hd95(pred, gt, (1.0, 1.0))
    gt3 = ellipse((20, 24, 22), (10, 12, 11), (6, 8, 7))
    pred3 = ellipse((20, 24, 22), (9, 13, 10), (7, 6, 8))
    pred3[1:3, 1:3, 18:21] = True
    out["3d"] = hd95(pred3, gt3, (2.0, 0.7, 0.9))
    return out


def images():
    g = Lcg(31)
    full = g.uniform(24, 20) * 2.0 - 0.5          # data range 2
    low = full + (g.uniform(24, 20) - 0.5) * 0.6
    restored = full + (g.uniform(24, 20) - 0.5) * 0.25
    g = Lcg(32)
    full3 = g.uniform(14, 13, 12)
    low3 = np.clip(full3 + (g.uniform(14, 13, 12) - 0.5) * 0.4, 0, 1)
    restored3 = np.clip(full3 + (g.uniform(14, 13, 12) - 0.5) * 0.2, 0, 1)

    def ssim(a, b, data_range):
        return float(structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range))

    def score(delta_restored, delta_original):
        return 100.0 * (1.0 - delta_restored / delta_original)

    out = {
        "mse_2d": float(mean_squared_error(full, low)),
        "psnr_2d": float(peak_signal_noise_ratio(full, low, data_range=2.0)),
        "ssim_2d": ssim(full, low, 2.0),
        "ssim_2d_restored": ssim(full, restored, 2.0),
        "mse_3d": float(mean_squared_error(full3, low3)),
        "psnr_3d": float(peak_signal_noise_ratio(full3, low3, data_range=1.0)),
        "ssim_3d": ssim(full3, low3, 1.0),
        "ssim_3d_restored": ssim(full3, restored3, 1.0),
    }
    out["score_mse_2d"] = score(mean_squared_error(full, restored), mean_squared_error(full, low))
    out["score_ssim_2d"] = score(1 - out["ssim_2d_restored"], 1 - out["ssim_2d"])
    out["score_mse_3d"] = score(mean_squared_error(full3, restored3), mean_squared_error(full3, low3))
    out["score_ssim_3d"] = score(1 - out["ssim_3d_restored"], 1 - out["ssim_3d"])
    return out


print(json.dumps({"classification": classification(), "overlap": overlap(), "hausdorff": hausdorff(), "images": images()}, indent=1))
