"""Table 4: the Gated Dual-Path Adapter's parts -- single or dual path, inter-view or global-view
aggregator, gate on or off -- plus the dual path with both encoders CLIP-initialised.

Every cell trains adapters (K-shot, ``fewshot.seeds``) on frozen encoders: the pre-trained depth encoder
of ``model.depth_encoder`` and, on the dual path, CLIP's visual encoder. Without a depth encoder in the
config, :func:`prepare` pre-trains one first (the toy default) and every cell uses it.
"""

from __future__ import annotations

from clip2point.config import ExperimentConfig
from clip2point.engine.context import Experiment
from clip2point.engine.fewshot import run_few_shot
from clip2point.engine.pretrain import run_pretraining, runs_folder
from clip2point.schema import with_overrides
from clip2point.sweep.study import Cell, Column, Metrics, Report, Study
from clip2point.tracking import Tracker

ENCODER_RUN = "ablation_adapter-depth-encoder"


def _cell(name: str, path: str, aggregator: str, fusion: str, paper: float | None, **extra) -> Cell:
    overrides = {
        "fewshot.adapter.path": path,
        "fewshot.adapter.aggregator": aggregator,
        "fewshot.adapter.fusion": fusion,
        # The inter-view adapter exists in the paper's form only; the global one in the official form.
        "fewshot.adapter.variant": "official" if aggregator == "global" else "paper",
    }
    return Cell(name, {**overrides, **extra}, {"fewshot_acc": paper})


CELLS = (
    _cell("single, inter-view", "single", "inter_view", "none", 86.06),
    _cell("single, global-view", "single", "global", "none", 87.32),
    _cell("dual, inter-view, gate", "dual", "inter_view", "gate", 86.18),
    _cell("dual, global-view, no gate", "dual", "global", "none", 89.21),
    _cell("dual, global-view, gate", "dual", "global", "gate", 89.79),
    _cell(
        "dual, global-view, gate, both CLIP",
        "dual",
        "global",
        "gate",
        87.20,
        **{"model.depth_encoder": None},
    ),
)


def adapter_trial(config: ExperimentConfig, tracker: Tracker, report: Report) -> Metrics:
    """K-shot test accuracy of one adapter configuration at the selected epochs, mean +- std over the seeds."""

    def each_epoch(seed, stats) -> None:
        if seed == config.fewshot.seeds[0]:
            report({"selection_acc": stats.selection_acc, "loss": stats.loss})

    result = run_few_shot(Experiment.from_config(config), track=False, progress=False, on_epoch=each_epoch)
    return result.metrics("fewshot_acc")


def prepare(config: ExperimentConfig) -> ExperimentConfig:
    """Give the study a pre-trained depth encoder: ``model.depth_encoder`` if set, else pre-train one
    (run ``ablation_adapter-depth-encoder`` in ``<storage>/pretrain``; an earlier, possibly interrupted run
    of that name is resumed, which returns at once when it had finished)."""
    if config.model.depth_encoder is not None:
        return config
    earlier = (runs_folder(config) / ENCODER_RUN).is_dir()
    print(
        f"no model.depth_encoder given: {'resuming' if earlier else 'starting'} pre-training run {ENCODER_RUN}"
    )
    result = run_pretraining(config, ENCODER_RUN, resume=earlier)
    return with_overrides(config, {"model.depth_encoder": str(result.best_file)})


STUDY = Study(
    name="ablation_adapter",
    title="Adapter ablation (Table 4): K-shot top-1 of each part of the Gated Dual-Path Adapter",
    trial=adapter_trial,
    columns=(Column("fewshot_acc", "16-shot", fewshot=True),),
    cells=CELLS,
    paper_reference="Table 4 (ModelNet40 16-shot, ViT-B/32, pre-trained depth encoder)",
    primary="fewshot_acc",
    prepare=prepare,
)
