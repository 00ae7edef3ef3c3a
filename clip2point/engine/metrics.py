"""Classification metrics: overall and per-class accuracy, confusion matrices and their pictures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clip2point.plots import pyplot, save_figure


@dataclass(frozen=True)
class Accuracy:
    """Top-1 results over M samples and K classes.

    ``overall`` and ``per_class`` are percentages; ``confusion[t, p]`` counts samples of true class t
    predicted as p (``(K, K)`` int64). A class with no samples has per-class accuracy NaN.
    """

    overall: float
    per_class: dict[str, float]
    confusion: np.ndarray
    num_samples: int

    @property
    def mean_per_class(self) -> float:
        """Mean of the per-class accuracies over classes that have samples (%)."""
        values = [v for v in self.per_class.values() if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")


def accuracy(logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> Accuracy:
    """Top-1 accuracy of ``logits (M, K)`` against ``labels (M,)``."""
    num_classes = len(class_names)
    if logits.ndim != 2 or logits.shape[1] != num_classes or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not fit labels {tuple(labels.shape)} and {num_classes} classes"
        )
    predicted = logits.argmax(dim=1).cpu().numpy()
    truth = labels.cpu().numpy().astype(np.int64)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(totals > 0, 100.0 * np.diag(confusion) / totals, np.nan)
    overall = 100.0 * float(np.trace(confusion)) / max(len(truth), 1)
    return Accuracy(
        overall=overall,
        per_class={name: float(v) for name, v in zip(class_names, per_class, strict=True)},
        confusion=confusion,
        num_samples=len(truth),
    )


def save_confusion_png(result: Accuracy, path: str | Path, title: str = "") -> Path:
    """Draw the confusion matrix, rows normalised to the true class, counts in the cells."""
    plt = pyplot()
    names = list(result.per_class)
    k = len(names)
    totals = result.confusion.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(0.45 * k + 3, 0.45 * k + 2.5))
    ax.imshow(result.confusion / totals, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for t in range(k):
            for p in range(k):
                if result.confusion[t, p]:
                    ax.text(p, t, str(result.confusion[t, p]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} top-1 {result.overall:.2f}% (n={result.num_samples})".strip(), fontsize=9)
    return save_figure(fig, path)
