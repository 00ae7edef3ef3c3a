"""Table 1: zero-shot top-1 on each dataset of ``sweep.datasets`` with CLIP's visual encoder and with the
pre-trained depth encoder, plus the pre-training data check: CLIP's zero-shot on the pre-training
validation pairs, RGB render vs the depth map at the same view.

Zero-shot involves no training and no random draw beyond the dataset's sampling seed, so each cell is one
number (n = 1). Features come from the feature cache, so a cell that shares its encoder and data with
another study's costs nothing twice.
"""

from __future__ import annotations

from clip2point.config import ExperimentConfig
from clip2point.data import DATASETS
from clip2point.engine.context import Experiment
from clip2point.engine.zeroshot import render_check, zero_shot_accuracy
from clip2point.registry import PRETRAIN_PAIRS
from clip2point.sweep.studies.common import with_depth_encoder
from clip2point.sweep.study import Cell, Column, Metrics, Report, Study
from clip2point.tracking import Tracker

# The paper's Table 1 (ViT-B/32; the view count is not given): without / with pre-training.
PAPER = {
    "modelnet10": (30.51, 66.63),
    "modelnet40": (29.71, 49.38),
    "scanobjectnn_obj_only": (28.40, 35.46),
    "scanobjectnn_obj_bg": (23.92, 30.46),
    "scanobjectnn_pb_t50_rs": (18.18, 23.32),
}
# The pre-training data check (Sec. 5.1): CLIP on the ShapeNet validation pairs.
PAPER_CHECK = {"zeroshot_acc": 19.98, "rgb_acc": 54.21}
CHECK = "ShapeNet val pairs, CLIP: depth maps vs RGB renders"


def cells(config: ExperimentConfig) -> tuple[Cell, ...]:
    """Per dataset of ``sweep.datasets``: CLIP, then the pre-trained encoder, at ``sweep.zeroshot_views``
    views (if set); then the data check (at ``render.views``)."""
    rows = []
    views = {} if config.sweep.zeroshot_views is None else {"render.views": config.sweep.zeroshot_views}
    for name in config.sweep.datasets:
        without, with_ = PAPER.get(name, (None, None))
        title = DATASETS[name].title
        clip = Cell(f"{title}, CLIP", {"data.dataset": name, "model.depth_encoder": None, **views},
                    {"zeroshot_acc": without})  # fmt: skip
        rows += [clip, Cell(f"{title}, pre-trained", {"data.dataset": name, **views}, {"zeroshot_acc": with_},
                            baseline=clip)]  # fmt: skip
    rows.append(Cell(CHECK, {"data.dataset": PRETRAIN_PAIRS, "model.depth_encoder": None}, PAPER_CHECK))
    return tuple(rows)


def zeroshot_trial(config: ExperimentConfig, tracker: Tracker, report: Report) -> Metrics:
    """Zero-shot top-1 of the experiment's depth encoder on the test split; for the pre-training pairs, the
    data check (depth maps in ``zeroshot_acc``, RGB renders in ``rgb_acc``)."""
    experiment = Experiment.from_config(config)
    if config.data.dataset == PRETRAIN_PAIRS:
        check = render_check(experiment, progress=False)
        return {"zeroshot_acc": check["depth"].overall, "rgb_acc": check["rgb"].overall}
    test = experiment.dataset("test")
    features = experiment.features(experiment.depth_encoder, test, progress=False)
    text = experiment.text_features(test.class_names)
    return {
        "zeroshot_acc": zero_shot_accuracy(features.features, features.labels, text, test.class_names).overall
    }


STUDY = Study(
    name="table1_zeroshot",
    title="Zero-shot top-1 (Table 1): CLIP vs the pre-trained depth encoder, and the pre-training data check",
    trial=zeroshot_trial,
    columns=(Column("zeroshot_acc", "zero-shot, depth maps"), Column("rgb_acc", "zero-shot, RGB renders")),
    cells=cells,
    paper_reference="Table 1 (ViT-B/32; views not given) and Sec. 5.1 (ShapeNet validation: "
    f"RGB {PAPER_CHECK['rgb_acc']}, depth {PAPER_CHECK['zeroshot_acc']})",
    primary="zeroshot_acc",
    prepare=with_depth_encoder,
    stage="table1",
    heading="Table 1: zero-shot classification",
    about="Zero-shot top-1 with CLIP's visual encoder and with the pre-trained depth encoder; the last "
    "row is the pre-training data check (CLIP on the pre-training validation pairs: depth maps "
    "in the first column, RGB renders in the second). One number per cell: zero-shot has no "
    "seed. Difference: pre-trained minus CLIP.",
)
