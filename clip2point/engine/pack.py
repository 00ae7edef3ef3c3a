"""``clip2point data pack``: turn a pre-training data root into a pack (:mod:`clip2point.data.pack`).

The objects (:mod:`clip2point.data.pack_sources`), in the pack's mixed order
(:func:`~clip2point.data.pack_order.stored_order`), are cut into shards of ``shard_size``; each shard is one
Ray task (a cluster packs in parallel) that reads the clouds and renders, runs the frozen image encoder on
every render once, in the config's precision, and writes its Parquet file to the storage atomically. A
killed packing leaves finished shards and ``pack.json`` (the settings); run again with the same settings it
packs only the missing shards. ``manifest.json`` is written last, so an unfinished pack is never read.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict

import torch

from clip2point import storage
from clip2point.config import ExperimentConfig
from clip2point.data.files import read_image, read_npy
from clip2point.data.pack import (
    FORMAT,
    MANIFEST,
    PENDING,
    Encoder,
    Manifest,
    Shard,
    shard_bytes,
    shard_name,
    shard_sizes,
)
from clip2point.data.pack_order import stored_order
from clip2point.data.pack_sources import PackObject, plan_pack
from clip2point.engine.features import autocast, compute_precision
from clip2point.errors import InputError
from clip2point.models import load_clip
from clip2point.prepare import prepare
from clip2point.schema import with_overrides


@functools.lru_cache(maxsize=2)
def _encoder(name: str, pretrained: str | None, device: str):
    """The frozen image encoder and its bundle, loaded once per worker process."""
    bundle = load_clip(name, pretrained, device)
    return bundle, bundle.image_encoder()


def pack_shard(
    model: tuple[str, str | None], device: str, precision: str, objects: list[PackObject], location: str
) -> int:
    """Encode the renders of ``objects`` on ``device`` in ``precision`` (the config's ``fp32``/``bf16``) and
    write their shard to ``location``; return its size in bytes."""
    bundle, encoder = _encoder(*model, device)
    rows = []
    for obj in objects:
        images = torch.stack([read_image(r, bundle.image_size, bundle.norm) for r in obj.renders])
        with autocast(device, precision):
            features = encoder(images.to(device)).float().cpu().numpy()
        rows.append({"index": obj.index, "record": obj.record, "label": obj.label, "source": obj.cloud,
                     "cloud": read_npy(obj.cloud), "features": features, "cameras": obj.cameras})  # fmt: skip
    data = shard_bytes(rows)
    storage.write_bytes(location, data)
    return len(data)


def pack_dataset(
    config: ExperimentConfig,
    out: str,
    *,
    layout: str = "shapenet55",
    root: str | None = None,
    split: str = "train",
    shard_size: int = 256,
    use_gpu: bool = False,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Pack the ``layout`` data under ``root`` (default ``data.root``) into the storage location ``out`` with
    ``config``'s backbone and precision, as Ray tasks (``use_gpu``: one GPU each); resume an unfinished pack
    there. Returns the manifest. The config is made ready to run first with ``root`` as its ``data.root``
    (:func:`~clip2point.prepare.prepare`: paths absolute, the toy world built if that is a toy root)."""
    import ray
    from tqdm import tqdm

    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    config = prepare(with_overrides(config, {"data.root": root}) if root else config)
    root = config.data.root  # absolute: the packing tasks may run elsewhere
    plan = plan_pack(layout, root, split, config.data.on_error)
    if not plan.objects:
        raise InputError(f"nothing to pack in {root}: no objects with a cloud and renders "
                         f"({len(plan.skipped)} left out); nothing was written to {out}")  # fmt: skip
    bundle = load_clip(config.model.name, config.model.pretrained, "cpu")
    device = "cuda" if use_gpu else "cpu"
    encoder = Encoder.of(bundle, compute_precision(device, config.precision))
    stored = [plan.objects[i] for i in stored_order(len(plan.objects)).tolist()]
    chunks = [stored[i : i + shard_size] for i in range(0, len(stored), shard_size)]
    settings = {"encoder": asdict(encoder), "layout": layout, "source": str(root), "split": split,
                "objects": len(plan.objects), "shard_size": shard_size, "format": FORMAT}  # fmt: skip
    _start_or_resume(out, settings)
    done = shard_sizes(out)
    todo = [i for i in range(len(chunks)) if shard_name(i) not in done]
    log(f"packing {len(plan.objects)} objects of {root} into {out}: {len(chunks)} shards, "
        f"{len(chunks) - len(todo)} already packed")  # fmt: skip
    task = ray.remote(pack_shard).options(num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=1)
    model = (config.model.name, config.model.pretrained)
    pending = {
        task.remote(model, device, config.precision, chunks[i], storage.join(out, shard_name(i))): i
        for i in todo
    }
    with tqdm(total=len(plan.objects), initial=sum(len(chunks[i]) for i in range(len(chunks)) if i not in todo),
              desc="packing", unit="objects") as bar:  # fmt: skip
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready[0])
                done[shard_name(index)] = ray.get(ready[0])
                bar.update(len(chunks[index]))
        finally:  # a failed shard stops the others; finished shards stay for a resume
            _stop(list(pending))
    manifest = Manifest(
        encoder=encoder, layout=layout, source=str(root), split=split, num_objects=len(plan.objects),
        embed_dim=bundle.embed_dim, class_names=plan.class_names,
        shards=tuple(Shard(shard_name(i), len(c), done[shard_name(i)]) for i, c in enumerate(chunks)),
        skipped=tuple(plan.skipped),
    )  # fmt: skip
    storage.write_text(storage.join(out, MANIFEST), manifest.to_json())
    storage.remove(storage.join(out, PENDING))
    if plan.skipped:
        log(f"left out {len(plan.skipped)} objects (data.on_error: skip); listed in {MANIFEST}")
    log(f"packed {manifest.num_objects} objects in {len(chunks)} shards: {out}")
    return manifest


def _stop(refs: list, timeout_s: float = 120.0) -> None:
    """Cancel the packing tasks ``refs`` and wait until they have ended: a running one is interrupted
    (not killed), so its shard is either written whole or its temp file removed, never left half-written
    after :func:`pack_dataset` has returned."""
    import ray

    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=timeout_s)


def _start_or_resume(out: str, settings: dict) -> None:
    """Record ``settings`` in ``<out>/pack.json``, or check that an unfinished pack there has them."""
    storage.check_storage(out)
    if storage.exists(storage.join(out, MANIFEST)):
        raise InputError(f"{storage.join(out, MANIFEST)} exists: {out} already holds a finished pack; "
                         "allowed: another location, or delete that pack first")  # fmt: skip
    pending = storage.join(out, PENDING)
    if not storage.exists(pending):
        storage.write_text(pending, json.dumps(settings, indent=2))
        return
    recorded, settings = json.loads(storage.read_text(pending)), json.loads(json.dumps(settings))
    if recorded != settings:
        differ = sorted(k for k in settings if recorded.get(k) != settings[k])
        raise InputError(f"{pending}: an unfinished pack with other settings ({', '.join(differ)} differ) is "
                         f"in {out}; allowed: the same settings to resume it, or another location")  # fmt: skip
