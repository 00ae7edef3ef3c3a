"""Pre-training checkpoints without Ray: a state round trip, the newest complete checkpoint of a run folder
(a local folder and an S3 bucket) chosen past damaged ones, and checkpoint folder names that never repeat."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from clip2point import storage
from clip2point.engine.pretrain_state import (
    checkpoint_folder,
    read_newest,
    read_state,
    restore_state,
    write_state,
)
from clip2point.errors import InputError
from tests.test_lease import store


def save(folder, epoch: int) -> None:
    """A checkpoint whose single weight is ``epoch``."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, float(epoch))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    write_state(folder, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                best={"best_val_acc": 1.0}, metrics={"loss_total": 2.0})  # fmt: skip


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> str:
    return storage.join(store(request, tmp_path), "pretrain", "r")


def test_the_newest_checkpoint_that_reads_back_is_used_and_the_damaged_ones_named(run, tmp_path):
    for epoch, folder in ((1, "epoch_0001"), (2, "epoch_0002"), (3, "epoch_0002.1"), (4, "epoch_0004")):
        save(tmp_path / folder, epoch)
        storage.upload(tmp_path / folder / "state.pt", storage.join(run, folder, "state.pt"))
    whole = (tmp_path / "epoch_0002.1" / "state.pt").read_bytes()
    storage.write_bytes(storage.join(run, "epoch_0002.1", "state.pt"), whole[: len(whole) // 2])
    # Ray Train's latest is epoch_0002.1: epoch_0004 (newer, never registered) is not considered
    payload, folder, damaged = read_newest(run, "epoch_0002.1")
    assert folder == "epoch_0002" and payload["epoch"] == 2
    location = storage.join(run, "epoch_0002.1", "state.pt")
    assert damaged == [
        f"cannot read pre-training checkpoint {location}: PytorchStreamReader failed reading zip archive: "
        "failed finding central directory"
    ]
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    epoch, best, metrics = restore_state(
        payload, model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1)
    )
    assert (epoch, best, metrics, model.weight.item()) == (2, {"best_val_acc": 1.0}, {"loss_total": 2.0}, 2.0)

    for folder in ("epoch_0001", "epoch_0002"):
        storage.write_bytes(storage.join(run, folder, "state.pt"), b"")
    with pytest.raises(InputError) as info:
        read_newest(run, "epoch_0002.1")
    message = str(info.value)
    assert message.startswith(f"no checkpoint of {run} reads back completely (")
    names = re.findall(r"([^\s(]+/state\.pt): ", message)
    assert names == [storage.join(run, f, "state.pt") for f in ("epoch_0002.1", "epoch_0002", "epoch_0001")]


def test_a_checkpoint_that_is_not_one_is_refused_naming_the_file(tmp_path):
    torch.save({"model": {}}, tmp_path / "state.pt")
    with pytest.raises(
        InputError, match=rf"checkpoint {tmp_path}/state.pt lacks optimizer, scheduler, epoch"
    ):
        read_state(tmp_path)
    (tmp_path / "state.pt").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(InputError, match=rf"cannot read pre-training checkpoint {tmp_path}/state.pt: "):
        read_state(tmp_path)


def test_checkpoint_folder_names_never_repeat():
    taken = {"epoch_0001", "epoch_0002", "epoch_0002.1", "config.yaml"}
    assert checkpoint_folder(3, taken) == "epoch_0003"
    assert checkpoint_folder(2, taken) == "epoch_0002.2"
    assert checkpoint_folder(2, taken) == "epoch_0002.3" and "epoch_0002.2" in taken
