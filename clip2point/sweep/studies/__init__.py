"""The paper's studies, one module each; ``sweeps/<name>.py`` runs the study of that name."""

from clip2point.sweep.studies import adapter, hpo, kshot, pretrain, rendering, supervised, zeroshot

STUDIES = {
    study.name: study
    for study in (
        zeroshot.STUDY,
        kshot.STUDY,
        supervised.STUDY,
        adapter.STUDY,
        rendering.STUDY,
        pretrain.STUDY,
        hpo.STUDY,
    )
}
