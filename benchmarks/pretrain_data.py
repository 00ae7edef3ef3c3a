"""Pre-training data: the raw PNG loader against a packed stream (``pretrain.data``), side by side with ratios.

    python benchmarks/pretrain_data.py                     # this machine's CPUs
    python benchmarks/pretrain_data.py --objects 1024 --epochs 3 --steps 3 --memory 1000 10000

Writes in a temp folder a ShapeNet55-layout set of ``--objects`` objects (8,192-point clouds; 64 distinct
sets of 10 real 224 x 224 RGBA PNG renders, hard-linked to every object, so the disk holds 640 images)
and its pack (the same clouds; image features of width C drawn at random: neither the data path nor the
step depends on their values, ``clip2point data pack`` computes real ones). Then, on one Ray instance of
``--cpus`` CPUs:

1. the data path alone: samples/s of batches of ``--batch`` (random point subsets, as the authors): the
   raw loader (:class:`ShapeNet55Pretrain` + ``DataLoader``: PNG decode, standardise, subset) with 0 and
   2 loader workers, over ``--raw-batches`` batches including the loader's start; the packed stream
   (:class:`PackStream`: one Ray Data execution for all epochs, its tasks on the Ray instance) over
   ``--epochs`` epochs: its rate from its first batch to the end (what a run sees once its stream runs:
   the ratios), and apart the time to that first batch (the execution's start, once per run);
2. whole steps (data + depth render + encoders + loss + backward + LAMB, :mod:`pretrain_throughput`'s
   step): ViT-B-32 (random weights, 224 px) and the toy CLIP, raw (0 loader workers, the image encoder
   on the PNG) against packed (the stored feature), median of ``--steps`` after one warm-up; "at most":
   the ratio if the packed step took the raw one's time less all its batch fetch and image encoder;
3. the peak resident memory of the process that consumes a pack's stream (the worker), one epoch of
   synthetic packs of each ``--memory`` size (512-point clouds, 10 features of width 64), each in a
   fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pretrain_throughput import build_step, run_step
from torch.utils.data import DataLoader

from clip2point import storage
from clip2point.data import ShapeNet55Pretrain
from clip2point.data.classnames import SHAPENET55_SYNSET_IDS
from clip2point.data.pack import MANIFEST, Encoder, Manifest, Shard, read_manifest, shard_bytes, shard_name
from clip2point.data.pack_order import stored_order
from clip2point.data.pack_stream import PackStream
from clip2point.models import load_clip
from clip2point.render import official_views

RENDER_SETS = 64


def write_raw(root: Path, objects: int, points: int = 8192) -> None:
    """A ShapeNet55 tree: ``objects`` clouds in the train list, renders hard-linked from 64 sets."""
    rng = np.random.default_rng(0)
    clouds, lists = root / "ShapeNet55" / "shapenet_pc", root / "ShapeNet55" / "ShapeNet-55"
    clouds.mkdir(parents=True)
    lists.mkdir(parents=True)
    sets = root / "render_sets"
    for s in range(RENDER_SETS):
        for view in range(10):
            image = Image.new("RGBA", (224, 224), (0, 0, 0, 0))
            box = rng.integers(20, 100, 2).tolist() + rng.integers(124, 204, 2).tolist()
            ImageDraw.Draw(image).ellipse(box, fill=(*rng.integers(0, 255, 3).tolist(), 255))
            (sets / str(s)).mkdir(parents=True, exist_ok=True)
            image.save(sets / str(s) / f"{view}.png")
    names = []
    for i in range(objects):
        synset, model = SHAPENET55_SYNSET_IDS[i % 55], f"m{i:06d}"
        np.save(clouds / f"{synset}-{model}.npy", rng.normal(size=(points, 3)).astype(np.float32))
        folder = root / "rendering" / f"{synset}_{model}"
        folder.mkdir(parents=True)
        for view in range(10):
            os.link(sets / str(i % RENDER_SETS) / f"{view}.png", folder / f"{view}.png")
        names.append(f"{synset}-{model}.npy")
    (lists / "train.txt").write_text("\n".join(names) + "\n")


def write_pack(out: Path, clouds: list[np.ndarray], width: int, shard_size: int = 512) -> str:
    """A pack of ``clouds`` (in the packs' stored order) with random features ``(10, width)`` and the
    official cameras."""
    rng = np.random.default_rng(1)
    cameras = torch.stack(list(official_views(10)), 1).numpy()
    shards = []
    stored = stored_order(len(clouds)).tolist()
    for first in range(0, len(clouds), shard_size):
        rows = [{"index": i, "record": i, "label": i % 55, "source": f"object {i}", "cloud": clouds[i],
                 "features": rng.normal(size=(10, width)).astype(np.float32), "cameras": cameras}
                for i in stored[first : first + shard_size]]  # fmt: skip
        data = shard_bytes(rows)
        storage.write_bytes(str(out / shard_name(len(shards))), data)
        shards.append(Shard(shard_name(len(shards)), len(rows), len(data)))
    encoder = Encoder("synthetic", None, "-", 224, (0.5,) * 3, (0.5,) * 3, "float32")
    manifest = Manifest(
        encoder, "synthetic", "synthetic", "train", len(clouds), width, ("x",) * 55, tuple(shards)
    )
    storage.write_text(str(out / MANIFEST), manifest.to_json())
    return str(out)


def stream(pack: str, batch: int, points: int = 1024, epochs: int = 1) -> PackStream:
    return PackStream(pack, read_manifest(pack), seed=0, rank=0, world=1, batch_size=batch, num_points=points,
                      sampling="random", last_epoch=epochs)  # fmt: skip


def raw_loader(root: Path, batch: int, workers: int, size: int = 224, norm=None) -> DataLoader:
    options = {"norm": norm} if norm is not None else {}
    data = ShapeNet55Pretrain(root, "train", num_points=1024, image_size=size, sampling="random", **options)
    return DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip


def rate(batches, limit: int | None, batch: int) -> float:
    """Samples/s of taking up to ``limit`` batches (all when None), including the iterator's start."""
    start, count = time.perf_counter(), 0
    for _ in batches:
        count += 1
        if limit is not None and count == limit:
            break
    return count * batch / (time.perf_counter() - start)


def step_rate(
    model: str, pretrained: str | None, batches, packed: bool, batch: int, steps: int
) -> tuple[float, float]:
    """Samples/s of whole steps (median of ``steps`` after one warm-up), fetching each batch from ``batches``,
    and the median share of the step spent fetching the batch and in the image encoder."""
    step = build_step(model, pretrained, batch, 1024, torch.device("cpu"))
    if packed:
        step.image_encoder = torch.nn.Identity()  # the stored feature instead of the encoder
    times, shares, iterator = [], [], iter(batches)
    for _ in range(steps + 1):
        start = time.perf_counter()
        item = next(iterator)
        step.points, step.view = item["points"], (item["azim"], item["elev"], item["dist"])
        step.rgb = item["features"] if packed else item["image"]
        marks, _ = run_step(step, "fp32", time.perf_counter)
        times.append(time.perf_counter() - start)
        shares.append((marks[0] - start + marks[2] - marks[1]) / times[-1])
    return batch / statistics.median(times[1:]), statistics.median(shares[1:])


def memory_child(pack: str) -> None:
    """Stream one epoch of ``pack`` (written by the parent); print the objects seen and the peak RSS in MiB."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    seen = sum(len(b["record"]) for b in stream(pack, 64, points=256).epoch(1))
    print(
        json.dumps({"objects": seen, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    )


def peak_memory(objects: int) -> dict:
    """Write a synthetic pack of ``objects`` (512-point clouds, features 10 x 64), stream it in a fresh process."""
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory(prefix="c2p-mem-") as folder:
        clouds = [rng.normal(size=(512, 3)).astype(np.float32) for _ in range(objects)]
        pack = write_pack(Path(folder), clouds, 64, shard_size=2000)
        del clouds
        out = subprocess.run([sys.executable, __file__, "--memory-child", pack],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--raw-batches", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-batch", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)
    import ray

    torch.set_num_threads(args.cpus)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="c2p-bench-") as folder:
        root = Path(folder) / "raw"
        write_raw(root, args.objects)
        clouds = [np.load(p) for p in sorted((root / "ShapeNet55" / "shapenet_pc").glob("*.npy"))]
        toy = load_clip("ToyCLIP", "toy")
        packs = {w: write_pack(Path(folder) / f"pack{w}", clouds, w) for w in {512, toy.embed_dim}}
        del clouds
        print(f"{args.objects} objects, batch {args.batch}, {args.cpus} CPUs, torch threads {args.cpus}\n")
        print("| what | raw PNG loader, samples/s | packed stream, samples/s | packed / raw |")
        print("| --- | --- | --- | --- |")
        packed_stream = stream(packs[512], args.batch, epochs=args.epochs)
        start = time.perf_counter()
        batches = (b for e in range(1, args.epochs + 1) for b in packed_stream.epoch(e))
        next(batches)
        started = time.perf_counter()  # the first batch: the execution runs
        packed = rate(batches, None, args.batch)  # the rest of all epochs
        packed_stream.close()
        for workers in (0, 2):
            raw = rate(raw_loader(root, args.batch, workers), args.raw_batches, args.batch)
            print(
                f"| data path, raw loader with {workers} workers | {raw:.1f} | {packed:.1f} | {packed / raw:.1f}x |"
            )
        for model, pretrained, width, bundle in (
            ("ViT-B-32", None, 512, None),
            ("ToyCLIP", "toy", toy.embed_dim, toy),
        ):
            size = 224 if bundle is None else bundle.image_size
            norm = None if bundle is None else bundle.norm
            raw_batches = raw_loader(root, args.step_batch, 0, size, norm)
            raw, share = step_rate(model, pretrained, raw_batches, False, args.step_batch, args.steps)
            pack_stream = stream(packs[width], args.step_batch)
            packed, _ = step_rate(model, pretrained, pack_stream.epoch(1), True, args.step_batch, args.steps)
            pack_stream.close()  # end its Ray Data execution before Ray ends
            print(
                f"| whole CPU step, {model}, batch {args.step_batch} | {raw:.2f} | {packed:.2f} | {packed / raw:.2f}x "
                f"(at most {1 / (1 - share):.2f}x) |"
            )
    ray.shutdown()
    print(f"\nthe packed stream's start (once per run): {started - start:.1f} s to its first batch")
    if args.memory:
        print("\n| pack objects | objects streamed | peak memory of the consuming worker, MiB |")
        print("| --- | --- | --- |")
        peaks = []
        for objects in args.memory:
            result = peak_memory(objects)
            peaks.append(result["peak_mib"])
            print(f"| {objects} | {result['objects']} | {result['peak_mib']:.0f} |")
        print(f"\nlargest / smallest pack: peak memory x{max(peaks) / min(peaks):.3f}")


if __name__ == "__main__":
    main()
