"""Few-shot adapter training with and without the feature cache: seconds per epoch and peak memory.

    python benchmarks/fewshot_cache.py [--epochs 3] [--config Y] [--preset paper] [-o key=value ...]
                                       [--model-config extra_open_clip_model.json]

The default config is the toy setting (toy ModelNet10 under data/toy, toy CLIP, 16 shots, the default
adapter). One seed (the first of fewshot.seeds) trains for ``--epochs`` epochs twice, each in its own
process so that its peak memory is its own:

- ``live``: every epoch renders and encodes the K-shot training samples and the test split anew;
- ``cached``: a fresh feature cache (a temporary folder) is filled once ("setup": extracting the whole
  train and test splits), then every epoch reads features from it.

Both runs give the same per-epoch accuracies (checked). "s/epoch" is the mean over the timed epochs
(after one warm-up epoch) of training plus test evaluation; peak memory is the growth of the process's
peak resident set (CPU) or torch's peak allocation (CUDA) over the state after loading the model and
data. ``--model-config`` registers an extra
open_clip model config (a JSON file named after the model) for settings other than the shipped ones.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time

from _timing import peak_rss_mib


def _measure(args: argparse.Namespace, cached: bool) -> dict:
    """Setup seconds, per-epoch seconds, peak MiB and the accuracy history of one mode (child process)."""
    import open_clip
    import torch

    from clip2point.commands.common import config_from_args
    from clip2point.engine.context import Experiment
    from clip2point.engine.feature_cache import SplitFeatures
    from clip2point.engine.fewshot import build_adapter, frozen_encoders, select_train, train_adapter
    from clip2point.prepare import prepare

    if args.model_config:
        open_clip.add_model_config(args.model_config)
    torch.manual_seed(0)  # a random-init model (model.pretrained null) is the same in both processes
    experiment = Experiment.from_config(prepare(config_from_args(args)))
    fs, seed, device = experiment.config.fewshot, experiment.config.fewshot.seeds[0], experiment.device
    encoders = frozen_encoders(experiment)
    splits = [experiment.dataset(split) for split in ("train", "test")]
    text = experiment.text_features(splits[0].class_names)
    indices = select_train(splits[0].labels, fs.shots, seed, splits[0].class_names)
    base = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        train, test = (
            SplitFeatures(ds, encoders, experiment.renderer, experiment.views, cache_dir=cache_dir if cached else None,
                          batch_size=fs.batch_size, device=device, progress=False)
            for ds in splits
        )  # fmt: skip
        setup = time.perf_counter() - start
        torch.manual_seed(seed)
        adapter = build_adapter(fs, experiment.views.num_views, experiment.bundle.embed_dim).to(device)
        stamps = [time.perf_counter()]
        result = train_adapter(
            adapter, train, test, text, splits[0].class_names, indices, epochs=args.epochs + 1,
            batch_size=fs.batch_size, lr=fs.lr, weight_decay=fs.weight_decay, seed=seed,
            on_epoch=lambda _: stamps.append(time.perf_counter()),
        )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib() - base
    per_epoch = (stamps[-1] - stamps[1]) / args.epochs  # the first epoch is a warm-up
    return {
        "setup": setup,
        "epoch": per_epoch,
        "peak": peak,
        "history": [s.test_acc for s in result.history],
        "samples": (len(indices), len(splits[0]), len(splits[1])),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    from clip2point.commands.common import add_config_arguments

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per mode")
    parser.add_argument("--model-config", help="an extra open_clip model config JSON to register")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    results = {}
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for name, cached in (("live", False), ("cached", True)):
            results[name] = pool.apply(_measure, (args, cached))
    live, cached = results["live"], results["cached"]
    shots, train_size, test_size = live["samples"]
    print(
        f"device={live['device']} torch threads={live['threads']}; {shots} training samples (of {train_size}), "
        f"{test_size} test samples; {args.epochs} epochs timed per mode after a warm-up epoch"
    )
    header = f"{'mode':<8} {'setup s':>8} {'s/epoch':>9} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        print(f"{name:<8} {row['setup']:>8.2f} {row['epoch']:>9.3f} {row['peak']:>9.0f}")
    speedup = live["epoch"] / cached["epoch"]
    saved = live["epoch"] - cached["epoch"]
    print(f"per-epoch speed-up with the cache: {speedup:.1f}x")
    print(f"the one-time extraction pays for itself after {cached['setup'] / saved:.1f} epochs")
    print(f"peak memory, cached / live: {cached['peak'] / max(live['peak'], 1e-9):.2f}x")
    same = live["history"] == cached["history"]
    print(f"per-epoch test accuracies identical in both modes: {same}")
    if not same:
        raise SystemExit("live and cached training disagree")


if __name__ == "__main__":
    main()
