"""`clip2point zeroshot --encoder` takes a local file, a storage URI (a bucket on the loopback S3 server) or an
MLflow artefact URI (``runs:/``), and all three give the same accuracies; a source that is not there is an
error naming it."""

from __future__ import annotations

import re

import pytest
import torch
from mlflow import MlflowClient

from clip2point import storage
from clip2point.cli import main
from clip2point.config import save_config
from clip2point.data import MODELNET10
from clip2point.models import encode_prompts, load_clip, save_module
from tests.engine.pretrain_fixtures import tiny_config_for


@pytest.fixture
def encoder_file(tmp_path):
    """A tiny-CLIP config, and a depth encoder saved locally that sees every depth map as a chair: its last
    LayerNorm outputs a constant whose projection is the prompt feature of "chair"."""
    config = tiny_config_for(tmp_path, **{"storage": None})
    config_file = tmp_path / "config.yaml"
    save_config(config, config_file)
    bundle = load_clip(config.model.name, config.model.pretrained)
    encoder = bundle.depth_encoder()
    chair = encode_prompts(bundle.text, MODELNET10)[MODELNET10.index("chair")]
    with torch.no_grad():
        constant = torch.linalg.lstsq(encoder.proj.T, chair.unsqueeze(1)).solution.squeeze(
            1
        )  # proj.T c = chair
        encoder.ln_post.weight.zero_()
        encoder.ln_post.bias.copy_(constant)
    return config, config_file, save_module(encoder, tmp_path / "depth.safetensors", {"epoch": "1"})


def zeroshot(config_file, capsys, *extra: str) -> tuple[int, str]:
    code = main(["zeroshot", "--config", str(config_file), "--no-track", *extra])
    captured = capsys.readouterr()
    return code, captured.out if code == 0 else captured.err


def accuracies(output: str) -> list[str]:
    """The per-class lines and the overall line."""
    return [line for line in output.splitlines() if re.search(r"\d+\.\d\d%", line)]


def test_encoder_from_a_bucket_or_mlflow_gives_the_local_files_accuracy(
    encoder_file, bucket, capsys, tmp_path
):
    config, config_file, local = encoder_file
    remote = storage.upload(local, f"s3://{bucket}/pretrain/run/best_depth_encoder.safetensors")
    client = MlflowClient(config.tracking.uri)
    experiment = client.create_experiment("sources", artifact_location=str(tmp_path / "artefacts"))
    run = client.create_run(experiment).info.run_id
    client.log_artifact(run, str(local), "checkpoints")
    runs_uri = f"runs:/{run}/checkpoints/depth.safetensors"

    # The tiny world's ModelNet10 test set: 2 bathtubs, 2 beds, 2 chairs (the other classes have none).
    expected = ["  bathtub        0.00%", "  bed            0.00%", "  chair        100.00%",
                "overall top-1: 33.33%   mean class accuracy: 33.33%"]  # fmt: skip
    for source in (str(local), remote, runs_uri):
        code, output = zeroshot(config_file, capsys, "--encoder", source, "--out", str(tmp_path / "out"))
        assert code == 0, output
        assert accuracies(output) == expected, source
    code, output = zeroshot(config_file, capsys, "--out", str(tmp_path / "out"))  # CLIP's own encoder
    assert code == 0 and accuracies(output) != expected  # so the file's encoder was the one used


def test_missing_encoder_sources_are_errors_naming_them(encoder_file, bucket, capsys):
    _, config_file, _ = encoder_file
    missing = f"s3://{bucket}/pretrain/none.safetensors"
    code, error = zeroshot(config_file, capsys, "--encoder", missing)
    assert code == 2 and f"cannot fetch {missing}: no such file in storage" in error
    code, error = zeroshot(
        config_file, capsys, "--encoder", "runs:/0123456789abcdef/checkpoints/x.safetensors"
    )
    assert code == 2 and "cannot fetch runs:/0123456789abcdef/checkpoints/x.safetensors from MLflow" in error
