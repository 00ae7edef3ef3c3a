"""Table 3: fully supervised classification with the GDPA: adapters trained on the whole train split
(``fewshot.shots: null``) on the frozen encoders, the full GDPA on the pre-trained depth encoder beside a
single-path adapter on CLIP alone; mean over ``fewshot.seeds`` (the seeds vary the adapter's initialisation
and batch order; the data is the whole split)."""

from __future__ import annotations

from clip2point.sweep.studies.common import CLIP_SINGLE_PATH, FULL_GDPA, fewshot_trial, with_depth_encoder
from clip2point.sweep.study import Cell, Column, Study

CELLS = (
    Cell("GDPA, pre-trained depth encoder", {**FULL_GDPA, "fewshot.shots": None}, {"fewshot_acc": 94.2}),
    Cell("single path, CLIP", {**CLIP_SINGLE_PATH, "fewshot.shots": None}),
)

STUDY = Study(
    name="table3_supervised",
    title="Fully supervised top-1 (Table 3): the GDPA trained on the whole train split",
    trial=fewshot_trial,
    columns=(Column("fewshot_acc", "supervised", fewshot=True),),
    cells=CELLS,
    paper_reference="Table 3 (ModelNet40, 1,024 points, 10 views: GDPA 94.2)",
    primary="fewshot_acc",
    prepare=with_depth_encoder,
)
