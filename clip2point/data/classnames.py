"""Class names in label order (docs/method.md section 5) and the ShapeNetCore synset ids of ShapeNet55.

Names keep underscores; prompts replace them with spaces (docs/method.md section 3), or follow the
authors' spelling (:func:`official_prompt_names`).
"""

from __future__ import annotations

from collections.abc import Sequence

from clip2point.errors import InputError

MODELNET40 = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip

MODELNET10 = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)  # fmt: skip

SCANOBJECTNN = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

# ShapeNetCore taxonomy: synset id -> name, in sorted synset order (= ShapeNet55 label order).
SHAPENET55_SYNSETS = {
    "02691156": "airplane", "02747177": "ashcan", "02773838": "bag", "02801938": "basket",
    "02808440": "bathtub", "02818832": "bed", "02828884": "bench", "02843684": "birdhouse",
    "02871439": "bookshelf", "02876657": "bottle", "02880940": "bowl", "02924116": "bus",
    "02933112": "cabinet", "02942699": "camera", "02946921": "can", "02954340": "cap",
    "02958343": "car", "02992529": "cellular telephone", "03001627": "chair", "03046257": "clock",
    "03085013": "computer keyboard", "03207941": "dishwasher", "03211117": "display", "03261776": "earphone",
    "03325088": "faucet", "03337140": "file", "03467517": "guitar", "03513137": "helmet",
    "03593526": "jar", "03624134": "knife", "03636649": "lamp", "03642806": "laptop",
    "03691459": "loudspeaker", "03710193": "mailbox", "03759954": "microphone", "03761084": "microwave",
    "03790512": "motorcycle", "03797390": "mug", "03928116": "piano", "03938244": "pillow",
    "03948459": "pistol", "03991062": "pot", "04004475": "printer", "04074963": "remote control",
    "04090263": "rifle", "04099429": "rocket", "04225987": "skateboard", "04256520": "sofa",
    "04330267": "stove", "04379243": "table", "04401088": "telephone", "04460130": "tower",
    "04468005": "train", "04530566": "vessel", "04554684": "washer",
}  # fmt: skip

SHAPENET55 = tuple(SHAPENET55_SYNSETS.values())
SHAPENET55_SYNSET_IDS = tuple(SHAPENET55_SYNSETS)

_BY_FAMILY = {
    "modelnet40": MODELNET40,
    "modelnet10": MODELNET10,
    "scanobjectnn": SCANOBJECTNN,
    "shapenet55": SHAPENET55,
}


def official_prompt_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as the authors' zero-shot and pre-training scripts write them in prompts: their ModelNet10
    list keeps the underscore of ``night_stand``; their ModelNet40, ScanObjectNN and ShapeNet55 lists spell
    every name with spaces (``flower pot``, ``night stand``), so other lists get spaces."""
    if tuple(names) == MODELNET10:
        return MODELNET10
    return tuple(name.replace("_", " ") for name in names)


def class_names(family: str) -> tuple[str, ...]:
    """Class names in label order of ``family``: modelnet40, modelnet10, scanobjectnn or shapenet55."""
    if family not in _BY_FAMILY:
        raise InputError(f"unknown class-name list {family!r}; allowed: {', '.join(_BY_FAMILY)}")
    return _BY_FAMILY[family]
