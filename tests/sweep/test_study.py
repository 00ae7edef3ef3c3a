"""A study is the one home of its cells, baselines, paper values and settings files: a baseline that is not
one of its cells (a renamed or dropped cell) is an error when the study or its cells are made, never a
blank column of results/paper.md."""

import dataclasses

import pytest

from clip2point.config import load_config
from clip2point.sweep.reproduce import STAGES, needs_encoder
from clip2point.sweep.studies import REPRODUCTION, adapter, kshot, pretrain
from clip2point.sweep.study import Cell, Study


def renamed_baseline(study: Study) -> Study:
    """``study`` with its baseline renamed, its cells left as they are."""
    return dataclasses.replace(study, baseline=dataclasses.replace(study.baseline, name="renamed"))


def test_a_renamed_or_dropped_baseline_cell_fails_when_the_study_is_made():
    with pytest.raises(ValueError, match=r"study ablation_adapter: its baseline 'renamed' is not one of its "
                                         r"cells \(single, inter-view, .*, dual, global-view, gate, "):  # fmt: skip
        renamed_baseline(adapter.STUDY)
    kept = tuple(cell for cell in pretrain.CELLS if cell is not pretrain.WITH_INTRA)
    with pytest.raises(ValueError, match=r"its baseline 'with intra-modality loss' is not one of its cells "
                                         r"\(cross-modality only\)"):  # fmt: skip
        dataclasses.replace(pretrain.STUDY, cells=kept)
    with pytest.raises(ValueError, match=r"study x: cell names repeat: \['a', 'a'\]"):
        Study("x", "x", trial=print, columns=(), cells=(Cell("a", {}), Cell("a", {"seed": 1})))


def test_cells_made_from_the_config_are_checked_when_made():
    config = load_config(overrides={"sweep.datasets": ["modelnet10"], "fewshot.shots": 2})
    rows = {cell.name: cell for cell in kshot.STUDY.cells_for(config)}
    with_two = rows["ModelNet10, 2-shot, with pre-training"]
    assert kshot.STUDY.baseline_of(with_two) is rows["ModelNet10, 2-shot, without pre-training"]
    assert kshot.STUDY.baseline_of(rows["ModelNet10, 2-shot, without pre-training"]) is None
    orphan = dataclasses.replace(with_two, baseline=dataclasses.replace(with_two.baseline, name="renamed"))
    broken = dataclasses.replace(kshot.STUDY, cells=lambda config: (*rows.values(), orphan))
    with pytest.raises(ValueError, match=r"study table2_kshot: cell names repeat"):
        broken.cells_for(config)
    broken = dataclasses.replace(kshot.STUDY, cells=lambda config: (orphan,))
    with pytest.raises(ValueError, match=r"cell 'ModelNet10, 2-shot, with pre-training''s baseline 'renamed' "
                                         r"is not one of its cells"):  # fmt: skip
        broken.cells_for(config)


def test_every_study_of_the_reproduction_names_its_stage_section_and_settings():
    assert [study.stage for study in REPRODUCTION] == [
        "table1", "table2", "table3", "table4", "table5", "pretrain", "search"
    ]  # fmt: skip
    assert [study.name for study in STAGES] == [
        "ablation_pretrain", "table1_zeroshot", "table2_kshot", "table3_supervised", "ablation_adapter",
        "ablation_rendering", "hpo_fewshot",
    ]  # fmt: skip
    assert [study.stage for study in STAGES if needs_encoder(study)] == [
        "table1",
        "table2",
        "table3",
        "table4",
    ]
    for study in REPRODUCTION:
        assert study.heading and study.about, study.name
        for preset in (None, "paper"):
            assert study.settings(preset).is_file(), study.settings(preset)
        assert study.settings().with_suffix(".py").is_file(), study.name  # sweeps/<name>.py runs it
    assert adapter.STUDY.settings("paper").name == "ablation_adapter.paper.yaml"
    # Every grid study compares its rows in results/paper.md (the search has none to compare).
    config = load_config(preset="paper")
    compared = {
        study.name
        for study in REPRODUCTION
        if any(study.baseline_of(cell) for cell in study.cells_for(config))
    }
    assert compared == {study.name for study in REPRODUCTION if study.search is None}


def test_a_state_from_before_baselines_were_recorded_asks_for_a_fresh_start(tmp_path):
    import json

    from clip2point.errors import InputError
    from clip2point.sweep.reproduce import State

    folder = tmp_path / "reproduce"
    folder.mkdir()
    stages = {"pretrain": {"status": "finished", "baselines": {}}, "table5": {"status": "finished"},
              "table1": {"status": "pending"}}  # fmt: skip
    (folder / "state.json").write_text(json.dumps({"stages": stages}))
    with pytest.raises(InputError, match=r"state .*state.json was written by an older clip2point \(finished "
                                         r"stages table5 record no baselines\); use --fresh"):  # fmt: skip
        State.load(str(folder), fresh=False)
    assert State.load(str(folder), fresh=True).data == {"stages": {}}
    del stages["table5"]
    (folder / "state.json").write_text(json.dumps({"stages": stages}))
    assert State.load(str(folder), fresh=False).data["stages"] == stages
