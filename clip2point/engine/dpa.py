"""Evaluating a Dual-Path Adapter checkpoint on a dataset split, as the evaluation mode of the authors'
few-shot script does (docs/method.md section 4): both frozen encoders of the checkpoint see the depth maps
of the official view set of its ``V`` views, each adapter aggregates its encoder's features, the two are
averaged and scored by cosine against the class prompts; top-1 over the split."""

from __future__ import annotations

from clip2point.engine.context import Experiment
from clip2point.engine.feature_cache import SplitFeatures
from clip2point.engine.fewshot import predict
from clip2point.engine.metrics import Accuracy, accuracy
from clip2point.models import FewShotClassifier
from clip2point.render import official_views


def evaluate_dpa(
    experiment: Experiment, classifier: FewShotClassifier, *, split: str = "test", progress: bool = True
) -> Accuracy:
    """Accuracy of ``classifier`` (:func:`~clip2point.models.load_dpa`) on the experiment's dataset
    ``split``, rendered with the experiment's settings at the checkpoint's ``V`` official views (not
    ``render.views``); features in ``precision``, through the feature cache (``fewshot.feature_cache``)."""
    config = experiment.config
    dataset = experiment.dataset(split)
    classifier = classifier.to(experiment.device).eval()
    views = official_views(classifier.adapter.depth_adapter.views)
    encoders = [classifier.depth.encoder, classifier.clip.encoder]
    features = SplitFeatures(
        dataset, encoders, experiment.renderer, views, cache_dir=config.fewshot.feature_cache,
        batch_size=config.fewshot.batch_size, device=experiment.device, progress=progress,
        precision=config.precision,
    )  # fmt: skip
    text = experiment.text_features(dataset.class_names)
    logits = predict(classifier.adapter, features, text, config.fewshot.batch_size)
    return accuracy(logits, features.labels, dataset.class_names)
