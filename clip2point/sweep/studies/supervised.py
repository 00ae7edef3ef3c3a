"""Table 3: fully supervised classification with the GDPA: adapters trained on the whole train split
(``fewshot.shots: null``) on the frozen encoders, the full GDPA on the pre-trained depth encoder beside a
single-path adapter on CLIP alone; mean over ``fewshot.seeds`` (the seeds vary the adapter's initialisation
and batch order; the data is the whole split)."""

from __future__ import annotations

from clip2point.sweep.studies.common import CLIP_SINGLE_PATH, FULL_GDPA, fewshot_study
from clip2point.sweep.study import Cell

GDPA = Cell("GDPA, pre-trained depth encoder", {**FULL_GDPA, "fewshot.shots": None}, {"fewshot_acc": 94.2})
CLIP_ALONE = Cell("single path, CLIP", {**CLIP_SINGLE_PATH, "fewshot.shots": None})

STUDY = fewshot_study(
    "supervised",
    (GDPA, CLIP_ALONE),
    name="table3_supervised",
    title="Fully supervised top-1 (Table 3): the GDPA trained on the whole train split",
    paper_reference=f"Table 3 (ModelNet40, 1,024 points, 10 views: GDPA {GDPA.paper['fewshot_acc']})",
    stage="table3",
    heading="Table 3: fully supervised",
    about="Adapters trained on the whole train split. Difference: GDPA minus the single path on CLIP.",
    baseline=CLIP_ALONE,
)
