"""clip2point.lease on a local folder and on a real S3 server (moto on loopback, conditional writes): one
holder per run, named in the refusal; a heartbeat; a dead holder's lease taken over only with take_over."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from clip2point import lease, storage
from clip2point.errors import LeaseError

HERE = f"{socket.gethostname()}:{os.getpid()}"


def store(request, tmp_path) -> str:
    """A storage root: a local folder, or (``request.param == "s3"``) a fresh bucket on the loopback S3 server."""
    return (
        str(tmp_path / "store")
        if request.param == "local"
        else f"s3://{request.getfixturevalue('bucket')}/c2p"
    )


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> str:
    return storage.join(store(request, tmp_path), "pretrain", "grp", "r")


def record(run: str, tries: int = 5) -> dict:
    """The lease's record as stored. moto rewrites an object's body in place, so a read racing a heartbeat
    can see it torn (S3 replaces objects atomically): such a read is tried again."""
    location = storage.join(run, lease.LEASE_FILE)
    for _ in range(tries - 1):
        try:
            return json.loads(storage.read_text(location))
        except json.JSONDecodeError:
            time.sleep(0.05)
    return json.loads(storage.read_text(location))


def test_a_second_start_is_refused_naming_the_holder_and_the_lease_goes_when_done(run):
    with lease.held(run, take_over=False, stale_after=30, what="run 'r'"):
        assert record(run)["holder"] == HERE
        for take_over in (False, True):  # a live holder's lease is not taken over, not even by --resume
            with pytest.raises(
                LeaseError, match=rf"^run 'r' is held by {HERE} \(started .*, last heartbeat \d+ s ago"
            ):
                lease.Lease(run, 30, "run 'r'").acquire(take_over)
    assert not storage.exists(storage.join(run, lease.LEASE_FILE))
    with lease.held(run, take_over=False, stale_after=30):  # free again
        pass


def test_the_heartbeat_keeps_a_lease_alive_past_its_timeout(run):
    with lease.held(run, take_over=False, stale_after=1.2):
        first = record(run)["heartbeat"]
        time.sleep(2.4)  # twice the timeout, eight beats
        assert record(run)["heartbeat"] > first + 1.2
        with pytest.raises(LeaseError, match="is held by"):
            lease.Lease(run, 1.2, "run").acquire(take_over=True)


def hold_forever(run: str) -> subprocess.Popen:
    """Another process that takes the lease (2 s timeout) and keeps it until it is killed."""
    code = (
        "import sys, time; from clip2point import lease; "
        f"held = lease.Lease({run!r}, 2.0, 'run'); held.acquire(False); held.start(); "
        "print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_dead_holders_lease_is_taken_over_by_resume_only(run):
    holder = hold_forever(run)
    other = f"{socket.gethostname()}:{holder.pid}"
    try:
        with pytest.raises(LeaseError, match=rf"is held by {other} .*allowed: wait for that run to end"):
            lease.Lease(run, 2.0, "run").acquire(take_over=True)
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing: its heartbeat stops
        holder.wait()
    time.sleep(2.5)
    with pytest.raises(LeaseError, match=rf"is held by {other} .*its holder stopped; allowed: --resume"):
        lease.Lease(run, 2.0, "run").acquire(take_over=False)
    with lease.held(run, take_over=True, stale_after=2.0):
        assert record(run)["holder"] == HERE


def race(run: str, start, results) -> None:
    start.wait()
    try:
        lease.Lease(run, 30, "run").acquire(take_over=True)
        results.put("won")
    except LeaseError as error:
        results.put(str(error))


def test_of_processes_starting_together_exactly_one_gets_the_lease(run):
    context = mp.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    racers = [context.Process(target=race, args=(run, start, results)) for _ in range(4)]
    for racer in racers:
        racer.start()
    outcomes = sorted(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join()
    winner = record(run)["holder"]
    assert outcomes[-1] == "won" and outcomes.count("won") == 1, outcomes
    assert all(f"is held by {winner}" in outcome for outcome in outcomes[:-1]), outcomes
