"""Table 2 and the K-shot curve: K in {1, 2, 4, 8, 16} shots per class (up to ``fewshot.shots``), without pre-training (a single-path
adapter on CLIP's visual encoder, as Table 5) and with it (the full GDPA: dual path, global-view
aggregators, gate, on the pre-trained depth encoder and CLIP), per dataset of ``sweep.datasets``; mean over
``fewshot.seeds`` with each seed kept (the same seeds draw the same K-shot samples in both rows)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from clip2point.config import ExperimentConfig
from clip2point.data import DATASETS
from clip2point.plots import pyplot, save_figure
from clip2point.stats import estimate, seed_values
from clip2point.sweep.report import paper_values
from clip2point.sweep.studies.common import CLIP_SINGLE_PATH, FULL_GDPA, fewshot_study
from clip2point.sweep.study import Cell, Study

SHOTS = (1, 2, 4, 8, 16)
WITHOUT, WITH = "without pre-training", "with pre-training"
ARMS = ((WITHOUT, CLIP_SINGLE_PATH), (WITH, FULL_GDPA))
PAPER_16_SHOT = {"modelnet40": {WITHOUT: 87.46, WITH: 89.79}}  # Table 2


def cell_name(dataset: str, shots: int, arm: str) -> str:
    return f"{DATASETS[dataset].title}, {shots}-shot, {arm}"


def shots_up_to(config: ExperimentConfig) -> tuple[int, ...]:
    """The curve's K values: :data:`SHOTS` up to ``fewshot.shots`` (all of them for the full split)."""
    top = config.fewshot.shots
    return tuple(k for k in SHOTS if top is None or k <= top)


def cells(config: ExperimentConfig) -> tuple[Cell, ...]:
    """Per dataset: every K without, then with pre-training (each compared with the same K without)."""
    rows = []
    for dataset in config.sweep.datasets:
        without: dict[int, Cell] = {}
        for arm, overrides in ARMS:
            for shots in shots_up_to(config):
                paper = PAPER_16_SHOT.get(dataset, {}).get(arm) if shots == 16 else None
                rows.append(Cell(cell_name(dataset, shots, arm),
                                 {**overrides, "data.dataset": dataset, "fewshot.shots": shots},
                                 {"fewshot_acc": paper}, baseline=without.get(shots)))  # fmt: skip
                if arm == WITHOUT:
                    without[shots] = rows[-1]
    return tuple(rows)


def plot_curves(study: Study, rows, path: Path, toy: bool, config: ExperimentConfig) -> Path:
    """Top-1 against K (log scale), one line per arm and dataset, with the std over seeds as error bars
    and the paper's 16-shot values as stars."""
    plt = pyplot()
    papers = paper_values(study, config)
    by_name = dict(rows)
    datasets = config.sweep.datasets  # the cells' (see cells)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for arm, _ in ARMS:
            means, errors = [], []
            for shots in SHOTS:
                trial = by_name.get(cell_name(dataset, shots, arm))
                values = list(seed_values(dict(trial.metrics), "fewshot_acc").values()) if trial else []
                summary = estimate(values) if values else None
                means.append(summary.mean if summary else math.nan)
                errors.append(summary.std if summary else 0.0)
            line = ax.errorbar(SHOTS, means, yerr=errors, marker="o", capsize=3, label=arm)
            paper = papers.get(cell_name(dataset, 16, arm), {}).get("fewshot_acc")
            if paper is not None:
                ax.plot([16], [paper], marker="*", markersize=12, color=line[0].get_color(), linestyle="none",
                        label=f"{arm} (paper)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(SHOTS, [str(k) for k in SHOTS])
        ax.set_xlabel("shots per class (K)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(DATASETS[dataset].title, fontsize=10)
        ax.legend(fontsize=7)
    title = study.title + (" - toy world" if toy else "")
    fig.suptitle(
        textwrap.fill(title, width=int(13 * fig.get_figwidth()), break_on_hyphens=False), fontsize=10
    )  # ~13 characters/inch
    return save_figure(fig, path)


_PAPER = PAPER_16_SHOT["modelnet40"]
STUDY = fewshot_study(
    "K-shot",
    cells,
    name="table2_kshot",
    title="K-shot top-1 (Table 2 and the K-shot curve): without and with pre-training",
    paper_reference=f"Table 2 (ModelNet40 16-shot, ViT-B/32: {_PAPER[WITHOUT]} without, {_PAPER[WITH]} with "
    "pre-training)",
    plot=plot_curves,
    stage="table2",
    heading="Table 2 and the K-shot curve",
    about="K-shot top-1 without pre-training (single path on CLIP) and with it (the full GDPA). "
    "Difference: with minus without, paired over the seeds (the same K-shot draws).",
)
