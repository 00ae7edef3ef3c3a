"""scripts/pretrain_report.py on a real MLflow store: the epoch table and the summary from a run's metrics."""

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.tracking import Tracker
from scripts import pretrain_report


def test_the_table_reads_every_epoch_and_the_best_one(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(overrides={"tracking.uri": uri, "pretrain.epochs": 2})
    tracker = Tracker.start(config, "toy-default", tags={"stage": "pretrain"})
    tracker.log_metrics({"val_acc": 50.0, "test_acc": 20.75}, 0)
    tracker.log_metrics({"loss_total": 4.5, "val_acc": 70.0, "test_acc": 60.5}, 1)
    tracker.log_metrics({"loss_total": 4.25, "val_acc": 65.0, "test_acc": 70.0}, 2)
    tracker.log_metrics({"best_epoch": 1, "best_test_acc": 60.5}, 2)
    tracker.client.set_terminated(tracker.run_id)

    out = tmp_path / "report.md"
    assert pretrain_report.main(["--name", "toy-default", "--tracking-uri", uri, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Pre-training run `toy-default`\n")
    assert "epochs `2`" in text and "optimiser `lamb`" in text and "(FINISHED)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [
        "| 0 (CLIP, before pre-training) | - | 50.00 | 20.75 |",
        "| 1 | 4.5000 | 70.00 | 60.50 |",
        "| 2 | 4.2500 | 65.00 | 70.00 |",
    ]
    assert "Best validation epoch 1: zero-shot on modelnet10 20.75% before pre-training, 60.50%" in text
    assert "(+39.75 points)" in text

    with pytest.raises(SystemExit, match="no pre-training run named 'other'"):
        pretrain_report.main(["--name", "other", "--tracking-uri", uri])
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "FINISHED"
    capsys.readouterr()
