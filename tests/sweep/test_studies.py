"""A study's shared pre-training step on the toy world (smallest sizes, a tiny CLIP). The studies run end to
end, Table 5 also in MLflow's own UI, in ``test_reproduce.py``."""

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.sweep.studies.common import ENCODER_RUN, with_depth_encoder
from tests.toy_setup import toy_overrides

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_study_without_a_depth_encoder_pretrains_one_first_and_then_reuses_it(
    ray_session, toy_world, tiny_clip_dir, tmp_path
):
    """Tables 1-4 and the search, run on their own, need a pre-trained depth encoder: without
    ``model.depth_encoder`` the shared pre-training run is made once; a second study reuses it."""
    config = load_config(overrides=toy_overrides(toy_world, tiny_clip_dir, tmp_path))
    prepared = with_depth_encoder(config)
    encoder = tmp_path / "storage" / "pretrain" / ENCODER_RUN / "best_depth_encoder.safetensors"
    assert prepared.model.depth_encoder == str(encoder) and encoder.is_file()
    made = encoder.stat().st_mtime_ns
    assert with_depth_encoder(config).model.depth_encoder == str(encoder)
    assert encoder.stat().st_mtime_ns == made  # the finished run was resumed, not trained again
    assert with_depth_encoder(prepared) is prepared  # an encoder in the config is used as it is
    client = MlflowClient(config.tracking.uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(config.tracking.experiment).experiment_id],
        "tags.stage = 'pretrain'",
    )  # one pre-training run, one epoch logged once
    assert run.info.run_name == ENCODER_RUN
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_total")] == [1]
