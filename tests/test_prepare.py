"""prepare(): a loaded config made ready to run (paths, storage probe, toy world)."""

import pytest

from clip2point.config import load_config
from clip2point.errors import StorageError
from clip2point.paths import project_root
from clip2point.prepare import prepare


def test_prepare_resolves_paths_and_probes_the_storage_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CLIP2POINT_STORAGE", raising=False)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    config = load_config(
        overrides={
            "data.root": "data/elsewhere",
            "storage": str(blocked / "runs"),
            "model.depth_encoder": "s3://b/e.pt",
        }
    )
    ready = prepare(config)  # no probe: nothing touches the storage; not a toy root: nothing built
    root = project_root()
    assert (ready.data.root, ready.storage) == (str(root / "data" / "elsewhere"), str(blocked / "runs"))
    assert ready.fewshot.feature_cache == str(root / "cache" / "features")
    assert ready.model.depth_encoder == "s3://b/e.pt"  # a URI stays as it is
    assert ready.tracking.uri == f"sqlite:///{root / 'mlflow.db'}"
    assert prepare(ready) == ready  # idempotent
    with pytest.raises(StorageError, match=rf"storage {blocked / 'runs'}: cannot write a probe file"):
        prepare(config, probe_storage=True)
    assert not (root / "data" / "elsewhere").exists()
