"""A study's results file from given trial outcomes (no Ray): the header names the datasets and the protocol
the cells ran under, and a search study has no paper columns."""

import pytest

from clip2point.config import load_config
from clip2point.sweep.paper import write_paper
from clip2point.sweep.report import write_results
from clip2point.sweep.runner import SweepOutcome, TrialOutcome
from clip2point.sweep.studies import STUDIES, zeroshot


@pytest.fixture
def config(tmp_path):
    return load_config(overrides={"sweep.results_dir": str(tmp_path / "results"), "fewshot.shots": 16})


def outcome(study, trials):
    return SweepOutcome(study.name, tuple(trials), "parent-id", "sqlite:///x.db", "/nowhere")


def test_protocol_names_the_shots_the_cells_train_on(config):
    kshot, supervised, adapter = (
        STUDIES[n] for n in ("table2_kshot", "table3_supervised", "ablation_adapter")
    )
    # Table 2's cells set K = 1..16: the validation split is "beside the K shots".
    assert "beside the K shots" in kshot.protocol(config, detail=True)
    # Table 3's cells all train on the full split: the validation split is a share of each class.
    assert supervised.protocol(config, detail=True).startswith(
        "selected on validation (10% of each class of the train split, held out)"
    )
    # Table 4's cells leave the shots to the config.
    assert "beside the 16 shots" in adapter.protocol(config, detail=True)
    assert (
        kshot.protocol(load_config(overrides={"fewshot.selection": "test"}))
        == "best test epoch, as the paper"
    )


def test_table1_zero_shot_runs_at_the_authors_six_views_under_the_paper_preset(config):
    study = STUDIES["table1_zeroshot"]
    paper = load_config(preset="paper", overrides={"sweep.datasets": ["modelnet40"]})
    views = {c.name: c.overrides.get("render.views") for c in study.cells_for(paper)}
    assert views == {"ModelNet40, CLIP": 6, "ModelNet40, pre-trained": 6, zeroshot.CHECK: None}
    chosen = load_config(preset="paper", overrides={"sweep.zeroshot_views": 10})
    assert {c.overrides.get("render.views") for c in study.cells_for(chosen)} == {10, None}
    assert {c.overrides.get("render.views") for c in study.cells_for(config)} == {
        None
    }  # default: render.views


def test_header_lists_each_rows_dataset_and_the_table_its_values(config, tmp_path):
    study = STUDIES["table1_zeroshot"]
    config = load_config(overrides={"sweep.results_dir": str(tmp_path), "sweep.datasets": ["modelnet10"]})
    trials = [
        TrialOutcome(cell.name, {}, {"zeroshot_acc": 10.0 + i, "rgb_acc": 50.0})
        for i, cell in enumerate(study.cells_for(config))
    ]
    md, png = write_results(study, config, outcome(study, trials), "python sweeps/table1_zeroshot.py")
    text = md.read_text()
    assert "- datasets: `modelnet10`, `shapenet55_pretrain` (as each row says) under" in text
    assert "| ModelNet10, pre-trained | 11.00 | 66.63 | 50.00 | - |" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_search_has_no_paper_columns(config):
    study = STUDIES["hpo_fewshot"]
    trials = [
        TrialOutcome("a", {"fewshot.lr": 0.01}, {"selection_acc": 80.0, "test_acc": 90.0}),
        TrialOutcome("b", {"fewshot.lr": 0.001}, {"selection_acc": 70.0}),
    ]
    md, _ = write_results(study, config, outcome(study, trials), "python sweeps/hpo_fewshot.py")
    table = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| setting | selection top-1 (searched) (measured; selected on validation) "
        "| test top-1 at the selected epoch (measured; selected on validation) |"
    )
    assert table[2:] == ["| lr=0.01 | 80.00 | 90.00 |", "| lr=0.001 | 70.00 | stopped early |"]


def test_the_authors_protocol_stands_beside_ours_both_labelled(tmp_path):
    study = STUDIES["ablation_adapter"]
    config = load_config(
        overrides={"sweep.results_dir": str(tmp_path), "fewshot.shots": 16, "sweep.authors_protocol": True}
    )
    seeds = {"fewshot_acc": 81.0, "fewshot_acc/seed0": 80.0, "fewshot_acc/seed1": 82.0}
    trials = [TrialOutcome(study.cells[0].name, {}, seeds | {"fewshot_acc_authors": 84.5})]
    md, _ = write_results(study, config, outcome(study, trials), "python sweeps/ablation_adapter.py")
    text = md.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| setting | 16-shot (measured; selected on validation) | 16-shot (measured; the authors' protocol) "
        "| 16-shot (paper; best test epoch) |"
    )
    assert table[2] == "| single, inter-view | 81.00 +- 1.41 (n=2; 95% CI 68.29 to 93.71) | 84.50 | 86.06 |"
    assert table[3] == "| single, global-view | not run | not run | 87.32 |"
    assert (
        "- beside it, the authors' protocol (`sweep.authors_protocol`): best test epoch, as the paper; "
        "one run (seed 0); clouds re-sampled every epoch\n" in text
    )


def test_paper_md_sets_the_authors_protocol_beside_ours_and_table5_against_the_disk(tmp_path):
    config = load_config(overrides={"sweep.results_dir": str(tmp_path)})
    ours = {"fewshot_acc/seed0": 80.0, "fewshot_acc/seed1": 82.0, "fewshot_acc": 81.0}
    disk = {"fewshot_acc/seed0": 79.0, "fewshot_acc/seed1": 80.0, "fewshot_acc": 79.5}
    record = {
        "status": "finished", "seconds": 60.0, "protocol": "selected on validation",
        "authors_protocol": "best test epoch, as the paper; one run (seed 0); clouds re-sampled every epoch",
        "columns": {"zeroshot_acc": "zero-shot", "fewshot_acc": "16-shot"},
        "cells": ["minimum square R=2", "minimum disk r=0.02"],
        "baselines": {"minimum square R=2": "minimum disk r=0.02"},
        "trials": [
            {"name": "minimum square R=2", "metrics": ours | {"zeroshot_acc": 30.0, "fewshot_acc_authors": 85.25},
             "params": {}, "paper": {"zeroshot_acc": 29.71, "fewshot_acc": 87.46}},
            {"name": "minimum disk r=0.02", "metrics": disk | {"zeroshot_acc": 31.0, "fewshot_acc_authors": 84.0},
             "params": {}, "paper": {"zeroshot_acc": 29.71, "fewshot_acc": 87.46}},
        ],
    }  # fmt: skip
    text = write_paper({"stages": {"table5": record}}, config, "python sweeps/reproduce.py").read_text()
    assert (
        "Beside it, the authors' protocol (one run, labelled so): best test epoch, as the paper; one run"
        in text
    )
    assert (
        "| setting | zero-shot | paper | 16-shot | 16-shot, the authors' protocol | paper | difference (16-shot) |"
        in text
    )
    assert (
        "| minimum square R=2 | 30.00 | 29.71 | 81.00 +- 1.41 (n=2; 95% CI 68.29 to 93.71) | 85.25 | 87.46 | "
        "+1.50 +- 0.71 (n=2; 95% CI -4.85 to 7.85) vs minimum disk r=0.02 |" in text
    )
    assert (
        "| minimum disk r=0.02 | 31.00 | 29.71 | 79.50 +- 0.71 (n=2; 95% CI 73.15 to 85.85) | 84.00 | 87.46 | - |"
        in text
    )
