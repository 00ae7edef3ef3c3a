"""Table 4: the Gated Dual-Path Adapter's parts -- single or dual path, inter-view or global-view
aggregator, gate on or off -- plus the dual path with both encoders CLIP-initialised.

Every cell trains adapters (K-shot, ``fewshot.seeds``) on frozen encoders: the pre-trained depth encoder
of ``model.depth_encoder`` and, on the dual path, CLIP's visual encoder. Without a depth encoder in the
config, one is pre-trained first (:func:`~clip2point.sweep.studies.common.with_depth_encoder`, shared by
the studies) and every cell uses it.
"""

from __future__ import annotations

from clip2point.sweep.studies.common import fewshot_study
from clip2point.sweep.study import Cell


def _cell(name: str, path: str, aggregator: str, fusion: str, paper: float | None, **extra) -> Cell:
    overrides = {
        "fewshot.adapter.path": path,
        "fewshot.adapter.aggregator": aggregator,
        "fewshot.adapter.fusion": fusion,
    }  # fewshot.adapter.variant from the config: official (the authors' forms) by default
    return Cell(name, {**overrides, **extra}, {"fewshot_acc": paper})


FULL_GDPA = _cell("dual, global-view, gate", "dual", "global", "gate", 89.79)
"""The full Gated Dual-Path Adapter, which every other part is compared with."""

CELLS = (
    _cell("single, inter-view", "single", "inter_view", "none", 86.06),
    _cell("single, global-view", "single", "global", "none", 87.32),
    _cell("dual, inter-view, gate", "dual", "inter_view", "gate", 86.18),
    _cell("dual, global-view, no gate", "dual", "global", "none", 89.21),
    FULL_GDPA,
    _cell(
        "dual, global-view, gate, both CLIP",
        "dual",
        "global",
        "gate",
        87.20,
        **{"model.depth_encoder": None},
    ),
)


STUDY = fewshot_study(
    "{shots}-shot",
    CELLS,
    name="ablation_adapter",
    title="Adapter ablation (Table 4): K-shot top-1 of each part of the Gated Dual-Path Adapter",
    paper_reference="Table 4 (ModelNet40 16-shot, ViT-B/32, pre-trained depth encoder)",
    stage="table4",
    heading="Table 4: the Gated Dual-Path Adapter's parts",
    about="K-shot top-1 of each part (16 shots in the paper). Difference: the row minus the full GDPA (dual "
    "path, global-view aggregators, gate), paired over the seeds.",
    baseline=FULL_GDPA,
)
