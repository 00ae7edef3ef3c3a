"""``results/paper.md``: every table of the paper as the reproduction measured it, beside the published
numbers. Each cell: mean +- sample std over seeds, n and the 95% confidence interval (Student t); for each
comparison the paper draws (an ablation, with vs without pre-training), the paired difference over the
same seeds with its interval (:mod:`clip2point.stats`); and the protocol that produced the number."""

from __future__ import annotations

import datetime
import math
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
from clip2point.sweep.studies import REPRODUCTION
from clip2point.sweep.study import AUTHORS, Study
from clip2point.tracking import git_revision


def write_paper(state: dict, config: ExperimentConfig, command: str) -> Path:
    """Write ``<sweep.results_dir>/paper.md`` from the reproduction's ``state``, a section per study of
    :data:`~clip2point.sweep.studies.REPRODUCTION`; return its path."""
    path = results_dir(config) / "paper.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = state["stages"]
    times = ", ".join(  # in the order the stages ran
        f"{stage} {record.get('seconds', math.nan) / 60:.1f}" for stage, record in records.items()
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
    for study in REPRODUCTION:
        record = records.get(study.stage)
        if record is None or record.get("status") != "finished":
            lines += [f"## {study.heading}", "", "not run yet", ""]
            continue
        lines += _section(study, record)
    path.write_text("\n".join(line for line in lines if line is not None) + "\n")
    return path


_TOY_NOTICE = (
    "**Toy-world results.** Measured on the embedded toy world (procedural furniture, the bundled toy CLIP): "
    "they show the whole reproduction working and how the settings compare there; they are not comparable "
    "with the paper's numbers, which stand beside them for orientation.\n"
)


def _section(study: Study, record: dict) -> list[str]:
    """One table: a row per cell, measured beside the paper per column (a search, which the paper does not
    have, without), then the paired difference of the study's primary metric with the row it is compared
    with (its baseline, as the stage recorded it; tables that compare rows)."""
    trials = {t["name"]: t for t in record["trials"]}
    baselines = record["baselines"]
    metric = study.primary or study.columns[0].metric
    order = record.get("cells") or sorted(
        trials, key=lambda name: -trials[name]["metrics"].get(metric, -math.inf)
    )
    with_paper = bool(record.get("cells"))
    compared = bool(baselines)
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
    out = [f"## {study.heading}", "", study.about, ""]
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
            reference = baselines.get(name)
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
