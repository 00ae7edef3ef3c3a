"""The paper's studies, one module each; ``sweeps/<name>.py`` runs the study of that name."""

from clip2point.sweep.studies import adapter, hpo, kshot, pretrain, rendering, supervised, zeroshot

REPRODUCTION = (
    zeroshot.STUDY,
    kshot.STUDY,
    supervised.STUDY,
    adapter.STUDY,
    rendering.STUDY,
    pretrain.STUDY,
    hpo.STUDY,
)
"""Every study of the paper, in the paper's order: the reproduction's stages (it runs the pre-training
first) and the sections of ``results/paper.md`` (:mod:`clip2point.sweep.reproduce`)."""

STUDIES = {study.name: study for study in REPRODUCTION}
