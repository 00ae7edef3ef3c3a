"""``results/paper.md``: every table of the paper as the reproduction measured it, beside the published
numbers. Each cell: mean +- sample std over seeds, n and the 95% confidence interval (Student t); for each
comparison the paper draws (an ablation, with vs without pre-training), the paired difference over the
same seeds with its interval (:mod:`clip2point.stats`); and the protocol that produced the number."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clip2point.config import ExperimentConfig
from clip2point.stats import paired_difference, seed_values
from clip2point.sweep.report import (
    STOPPED_EARLY,
    describe_params,
    display_root,
    is_toy,
    measured,
    results_dir,
)
from clip2point.sweep.studies import STUDIES
from clip2point.sweep.study import AUTHORS
from clip2point.tracking import git_revision


@dataclass(frozen=True)
class PaperTable:
    """How one stage appears in the paper: heading, what it shows, and for each row the row it is compared
    with (None: no comparison)."""

    stage: str
    heading: str
    about: str
    reference: Callable[[str], str | None] = lambda row: None


def _replace(old: str, new: str) -> Callable[[str], str | None]:
    """Compare each row that names ``old`` with the same row naming ``new`` instead."""
    return lambda row: row.replace(old, new) if old in row else None


def _against(name: str) -> Callable[[str], str | None]:
    """Compare every other row with the row ``name``."""
    return lambda row: name if row != name else None


TABLES = (
    PaperTable(
        "table1",
        "Table 1: zero-shot classification",
        "Zero-shot top-1 with CLIP's visual encoder and with the pre-trained depth encoder; the last "
        "row is the pre-training data check (CLIP on the pre-training validation pairs: depth maps "
        "in the first column, RGB renders in the second). One number per cell: zero-shot has no "
        "seed. Difference: pre-trained minus CLIP.",
        _replace("pre-trained", "CLIP"),
    ),
    PaperTable(
        "table2",
        "Table 2 and the K-shot curve",
        "K-shot top-1 without pre-training (single path on CLIP) and with it (the full GDPA). "
        "Difference: with minus without, paired over the seeds (the same K-shot draws).",
        _replace("with pre-training", "without pre-training"),
    ),
    PaperTable(
        "table3",
        "Table 3: fully supervised",
        "Adapters trained on the whole train split. Difference: GDPA minus the single path on CLIP.",
        _against("single path, CLIP"),
    ),
    PaperTable(
        "table4",
        "Table 4: the Gated Dual-Path Adapter's parts",
        "K-shot top-1 of each part (16 shots in the paper). Difference: the row minus the full GDPA (dual "
        "path, global-view "
        "aggregators, gate), paired over the seeds.",
        _against("dual, global-view, gate"),
    ),
    PaperTable(
        "table5",
        "Table 5: depth rendering",
        "Zero-shot and K-shot top-1 per rendering setting, without pre-training (16 shots in the paper). "
        "The paper's \"minimum, R=2\" row (29.71 / 87.46) stands beside two cells: Eq. 9's square of side 2 "
        "and the disk of radius 0.02 (about 2.2 px), the only footprint of the authors' released code. "
        "Those published values equal Table 1's and Table 2's without-pre-training numbers, which that code "
        "produced, so the row may have been measured with the disk; the paper does not say. Difference: the "
        "K-shot row minus the disk, paired over the seeds.",
        _against("minimum disk r=0.02"),
    ),
    PaperTable(
        "pretrain",
        "The intra-modality loss (Sec. 5.6)",
        "Zero-shot top-1 of the best (by validation) encoder of each pre-training run. One "
        "pre-training run per setting, so n = 1 and no interval. Difference: without minus with.",
        _against("with intra-modality loss"),
    ),
    PaperTable(
        "search", "Adapter hyper-parameter search", "Optuna (TPE) with ASHA early stopping, best first."
    ),
)


def write_paper(state: dict, stages: Sequence, config: ExperimentConfig, command: str) -> Path:
    """Write ``<sweep.results_dir>/paper.md`` from the reproduction's ``state``; return its path."""
    path = results_dir(config) / "paper.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    studies = {stage.key: STUDIES[stage.study] for stage in stages}
    records = state["stages"]
    times = ", ".join(
        f"{key} {records[key].get('seconds', math.nan) / 60:.1f}" for key in studies if key in records
    )
    lines = [
        "# CLIP2Point reproduced: every table of the paper",
        "",
        _TOY_NOTICE if is_toy(config) else "",
        f"- command: `{command}`",
        f"- backbone `{config.model.name}` (`{config.model.pretrained}`), data under `{display_root(config.data.root)}`",
        f"- date {datetime.date.today().isoformat()}, revision `{git_revision()[:12]}`, MLflow parent run "
        f"`{state.get('parent', {}).get('run_id')}` (every stage's sweep is nested under it)",
        f"- minutes per stage (last attempt): {times}",
        "- each measured cell: mean +- sample std over the seeds (n) and the 95% confidence interval of the "
        "mean (Student t, n - 1 degrees of freedom); differences are paired over the same seeds",
        "",
    ]
    for table in TABLES:
        record = records.get(table.stage)
        if record is None or record.get("status") != "finished":
            lines += [f"## {table.heading}", "", "not run yet", ""]
            continue
        lines += _section(table, studies[table.stage], record)
    path.write_text("\n".join(line for line in lines if line is not None) + "\n")
    return path


_TOY_NOTICE = (
    "**Toy-world results.** Measured on the embedded toy world (procedural furniture, the bundled toy CLIP): "
    "they show the whole reproduction working and how the settings compare there; they are not comparable "
    "with the paper's numbers, which stand beside them for orientation.\n"
)


def _section(table: PaperTable, study, record: dict) -> list[str]:
    """One table: a row per cell, measured beside the paper per column (a search, which the paper does not
    have, without), then the paired difference of the study's primary metric with the row it is compared
    with (tables that compare rows)."""
    trials = {t["name"]: t for t in record["trials"]}
    metric = study.primary or study.columns[0].metric
    order = record.get("cells") or sorted(
        trials, key=lambda name: -trials[name]["metrics"].get(metric, -math.inf)
    )
    with_paper = bool(record.get("cells"))
    compared = any(table.reference(name) is not None for name in order)
    titles = {column.metric: record["columns"].get(column.metric, column.label) for column in study.columns}
    authors = record.get("authors_protocol")  # the authors' protocol ran beside the configured one
    shown = {
        c.metric: [c.metric, c.metric + AUTHORS] if c.fewshot and authors else [c.metric]
        for c in study.columns
    }
    header = ["setting"]
    for column in study.columns:
        header += [titles[column.metric]]
        header += [f"{titles[column.metric]}, the authors' protocol"] if len(shown[column.metric]) > 1 else []
        header += ["paper"] if with_paper else []
    header += [f"difference ({titles.get(metric, metric)})"] if compared else []
    out = [f"## {table.heading}", "", table.about, ""]
    if any(column.fewshot for column in study.columns):
        out += [f"Protocol (the epoch behind each number): {record['protocol']}.", ""]
        if authors:
            out += [f"Beside it, the authors' protocol (one run, labelled so): {authors}.", ""]
    out += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in order:
        trial = trials.get(name)
        metrics = trial["metrics"] if trial else {}
        row = [name if with_paper else describe_params(trial["params"])]
        for column in study.columns:
            paper = (trial or {}).get("paper", {}).get(column.metric)
            for key in shown[column.metric]:
                row.append(
                    measured(metrics, key, "-" if with_paper else STOPPED_EARLY) if trial else "not run"
                )
            row += ["-" if paper is None else f"{paper:.2f}"] if with_paper else []
        if compared:
            reference = table.reference(name)
            row.append(_difference(metrics, trials.get(reference, {}).get("metrics"), metric, reference))
        out.append("| " + " | ".join(row) + " |")
    return [*out, ""]


def _difference(metrics: dict, reference: dict | None, metric: str, reference_name: str | None) -> str:
    """``+2.33 +- 1.53 (n=3; 95% CI -1.46 to 6.13) vs <row>``, paired over the common seeds (zero-shot
    rows: the plain difference, n = 1); ``-`` without a pair."""
    if reference is None or metric not in metrics or metric not in reference:
        return "-"
    mine, theirs = seed_values(metrics, metric), seed_values(reference, metric)
    if not mine or not theirs:  # one number each (zero-shot): their plain difference
        mine, theirs = {0: metrics[metric]}, {0: reference[metric]}
    return f"{paired_difference(mine, theirs).format(signed=True)} vs {reference_name}"
