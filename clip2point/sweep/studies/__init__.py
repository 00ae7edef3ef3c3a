"""The paper's studies, one module each; ``sweeps/<name>.py`` runs the study of that name."""

from clip2point.sweep.studies import adapter, hpo, pretrain, rendering

STUDIES = {study.name: study for study in (rendering.STUDY, adapter.STUDY, pretrain.STUDY, hpo.STUDY)}
