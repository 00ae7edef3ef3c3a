"""A study's results: the markdown table (measured beside the paper) and its plot, in ``results/``."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import yaml

from clip2point.config import ExperimentConfig
from clip2point.paths import project_root, resolve_path
from clip2point.plots import pyplot, save_figure
from clip2point.prepare import is_toy_root
from clip2point.stats import estimate, seed_values
from clip2point.sweep.runner import SweepOutcome, TrialOutcome
from clip2point.sweep.study import AUTHORS, Study
from clip2point.tracking import git_revision


def is_toy(config: ExperimentConfig) -> bool:
    """Whether the config runs the embedded toy world (toy CLIP or the toy data root)."""
    return config.model.pretrained == "toy" or is_toy_root(config.data.root)


STOPPED_EARLY = "stopped early"  # a search's trial that its scheduler ended before its final metrics


def measured(metrics: dict[str, float], metric: str, missing: str = "-") -> str:
    """``mean +- std (n=...; 95% CI ...)`` when the trial gave per-seed values, else the value; ``missing``
    when absent."""
    per_seed = seed_values(metrics, metric)
    if per_seed:
        return estimate(list(per_seed.values())).format()
    if metric not in metrics or metrics[metric] is None or math.isnan(metrics[metric]):
        return missing
    return f"{metrics[metric]:.2f}"


def spread(metrics: dict[str, float], metric: str) -> float:
    """The sample std of a metric's per-seed values (0 without them): error bars."""
    per_seed = seed_values(metrics, metric)
    return estimate(list(per_seed.values())).std if per_seed else 0.0


def paper_values(study: Study, config: ExperimentConfig) -> dict[str, dict]:
    """The paper's values of each cell, by cell name (empty for a search study)."""
    return {cell.name: dict(cell.paper) for cell in study.cells_for(config)}


def results_dir(config: ExperimentConfig) -> Path:
    """Where the study's table and plot go (``sweep.results_dir``, relative to the project root)."""
    return resolve_path(config.sweep.results_dir)


def table_rows(
    study: Study, outcome: SweepOutcome, config: ExperimentConfig
) -> list[tuple[str, TrialOutcome | None]]:
    """Rows in the study's order: each cell with its trial (None if it never ran); search studies: each
    trial named by its params, best first by the study's primary metric."""
    by_name = {t.name: t for t in outcome.trials}
    cells = study.cells_for(config)
    if cells:
        return [(cell.name, by_name.get(cell.name)) for cell in cells]
    ranked = sorted(
        outcome.trials,
        key=lambda t: -t.metrics.get(study.primary, -math.inf) if t.error is None else math.inf,
    )
    return [(describe_params(t.params), t) for t in ranked]


def describe_params(params) -> str:
    """``lr=0.00123, epochs=20`` from dotted-key trial params."""
    shown = []
    for key, value in params.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        shown.append(f"{key.rsplit('.', 1)[-1]}={text}")
    return ", ".join(shown)


def best_trial(study: Study, outcome: SweepOutcome) -> TrialOutcome | None:
    """The successful trial with the highest primary metric."""
    done = [t for t in outcome.trials if t.error is None and study.primary in t.metrics]
    return max(done, key=lambda t: t.metrics[study.primary]) if done else None


def write_results(
    study: Study, config: ExperimentConfig, outcome: SweepOutcome, command: str
) -> tuple[Path, Path]:
    """Write ``results/<study>.md`` and ``results/<study>.png``; return both paths."""
    folder = results_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    md, png = folder / f"{study.name}.md", folder / f"{study.name}.png"
    rows = table_rows(study, outcome, config)
    papers = paper_values(study, config)
    protocol = study.protocol(config)
    with_paper = bool(papers)  # a search study has no paper column
    header = ["setting"]
    authors = config.fewshot.authors().protocol()
    for column in study.columns:
        if column.fewshot:  # the epoch behind each number: ours as configured; the paper's best on test
            header.append(f"{column.title(config)} (measured; {protocol})")
            header += (
                [f"{column.title(config)} (measured; the authors' protocol)"]
                if column.authors(config)
                else []
            )
            header += [f"{column.title(config)} (paper; best test epoch)"] if with_paper else []
        else:
            header.append(f"{column.title(config)} (measured)")
            header += [f"{column.title(config)} (paper)"] if with_paper else []
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, trial in rows:
        cells = [name]
        paper = papers.get(name, {})
        for column in study.columns:
            metrics = [column.metric, column.metric + AUTHORS] if column.authors(config) else [column.metric]
            for metric in metrics:
                if trial is None:
                    cells.append("not run")
                elif trial.error is not None:
                    cells.append(f"failed: {trial.error}")
                else:
                    cells.append(measured(dict(trial.metrics), metric, "-" if with_paper else STOPPED_EARLY))
            reference = paper.get(column.metric)
            cells += ["-" if reference is None else f"{reference:.2f}"] if with_paper else []
        lines.append("| " + " | ".join(cells) + " |")
    toy = is_toy(config)
    notice = (
        "**Toy-world results.** These numbers come from the embedded toy world (procedural furniture, the "
        "bundled toy CLIP), a demo that exercises the whole pipeline on a laptop; they are not comparable "
        "with the paper's numbers, which are shown beside them for orientation only.\n\n"
        if toy
        else ""
    )
    text = (
        f"# {study.title}\n\n{notice}"
        f"- {_datasets(study, config)} under `{display_root(config.data.root)}`\n"
        f"- backbone: `{config.model.name}` (`{config.model.pretrained}`)\n"
        f"- rendering: {config.render.views} views, images at the backbone's input size\n"
        + (
            f"- few-shot epoch: {study.protocol(config, detail=True)}\n"
            if any(c.fewshot for c in study.columns)
            else ""
        )
        + (
            f"- beside it, the authors' protocol (`sweep.authors_protocol`): {authors}\n"
            if any(c.authors(config) for c in study.columns)
            else ""
        )
        + f"- precision: {config.precision} (float32 on the CPU)\n"
        f"- date: {datetime.date.today().isoformat()}, revision `{git_revision()[:12]}`\n"
        f"- paper: {study.paper_reference or 'see docs/method.md section 7'}\n"
        f"- command: `{command}`\n"
        f"- MLflow: parent run `{outcome.parent_run_id}` (experiment `{config.tracking.experiment}`)\n\n"
        + "\n".join(lines)
        + f"\n\n![{study.title}]({png.name})\n"
    )
    if study.search is not None:
        best = best_trial(study, outcome)
        if best is not None:
            best_file = folder / f"{study.name}.best.yaml"
            best_file.write_text(yaml.safe_dump(_nested(best.params), sort_keys=False))
            text += (
                f"\nBest trial ({study.primary} {best.metrics[study.primary]:.2f}): "
                f"`{describe_params(best.params)}`, saved as `{best_file.name}` (use it with `--config`).\n"
            )
    md.write_text(text)
    (study.plot or plot_results)(study, rows, png, toy, config)
    return md, png


def _nested(params) -> dict:
    """Dotted keys -> nested YAML sections."""
    tree: dict = {}
    for key, value in params.items():
        node = tree
        *sections, leaf = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return tree


def _datasets(study: Study, config: ExperimentConfig) -> str:
    """``dataset: `modelnet10` `` or, for a study whose cells set their own, ``datasets: `a`, `b` ``."""
    cells = study.cells_for(config)
    named = list(dict.fromkeys(c.overrides["data.dataset"] for c in cells if "data.dataset" in c.overrides))
    if len(named) <= 1:
        return f"dataset: `{named[0] if named else config.data.dataset}`"
    return "datasets: " + ", ".join(f"`{name}`" for name in named) + " (as each row says)"


def display_root(root: str) -> str:
    path = Path(root)
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def plot_results(study: Study, rows, path: Path, toy: bool, config: ExperimentConfig) -> Path:
    """Grouped bars per row: each column's measured value (with its std over seeds) beside the paper's
    (hatched)."""
    papers = paper_values(study, config)
    plt = pyplot()
    names = [name for name, _ in rows]
    width = 0.8 / (2 * len(study.columns))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, column in enumerate(study.columns):
        values, errors, paper = [], [], []
        for name, trial in rows:
            metrics = dict(trial.metrics) if trial is not None and trial.error is None else {}
            values.append(metrics.get(column.metric, math.nan))
            errors.append(spread(metrics, column.metric))
            reference = papers.get(name, {}).get(column.metric)
            paper.append(math.nan if reference is None else reference)
        x = [i + (2 * c - len(study.columns)) * width + width / 2 for i in range(len(names))]
        title = column.title(config)
        ax.bar(x, values, width, yerr=errors, capsize=3, color=colours[c], label=f"{title} (measured)")
        if not papers:  # a search study: nothing published to compare with
            continue
        ax.bar(
            [p + width for p in x],
            paper,
            width,
            color=colours[c],
            alpha=0.35,
            hatch="//",
            label=f"{title} (paper)",
        )
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(study.title + (" - toy world" if toy else ""), fontsize=10)
    return save_figure(fig, path)


def print_table(study: Study, outcome: SweepOutcome, config: ExperimentConfig) -> None:
    """The final table on stdout, with how the few-shot epochs were chosen."""
    rows = table_rows(study, outcome, config)
    width = max(len(name) for name, _ in rows) if rows else 8
    print(f"\n{study.title}")
    if any(c.fewshot for c in study.columns):
        print(f"few-shot epoch: {study.protocol(config, detail=True)}")
    print(f"{'setting':<{width}}  " + "  ".join(f"{c.title(config):>44}" for c in study.columns))
    for name, trial in rows:
        if trial is None or trial.error is not None:
            state = "not run" if trial is None else f"failed: {trial.error}"
            print(f"{name:<{width}}  {state}")
            continue
        print(
            f"{name:<{width}}  "
            + "  ".join(f"{measured(dict(trial.metrics), c.metric):>44}" for c in study.columns)
        )
