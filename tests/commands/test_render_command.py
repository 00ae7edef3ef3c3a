"""`clip2point render`: a PNG grid of what the encoder sees, RGB views of a mesh on top."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clip2point.cli import main
from clip2point.toy import make_shape
from clip2point.toy.world import object_rng, write_mesh_formats
from tests.data.data_writers import write_h5, write_off


@pytest.fixture
def chair_off(tmp_path):
    mesh = make_shape(2, object_rng(0, "modelnet", 2, 0))  # a toy chair
    return write_off(tmp_path / "chair.off", mesh.vertices, mesh.faces.tolist())


def test_compare_grid_has_an_rgb_row_and_one_row_per_setting(chair_off, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["render", str(chair_off), "--out", str(out), "--compare", "--size", "48", "--views", "6"]
    assert main(args) == 0
    assert "8 rows x 6 views, 48 px" in capsys.readouterr().out  # the RGB row + the 7 settings of Table 5
    with_rgb = Image.open(out).size
    assert main([*args, "--rgb", "off"]) == 0
    assert "7 rows x 6 views" in capsys.readouterr().out
    without = Image.open(out).size
    assert with_rgb[0] == without[0] and with_rgb[1] > without[1]  # one row taller


@pytest.mark.parametrize("suffix", ["obj", "stl", "glb"])
def test_other_mesh_formats_render_like_the_off_file(chair_off, tmp_path, suffix, capsys):
    mesh = make_shape(2, object_rng(0, "modelnet", 2, 0))
    other = next(p for p in write_mesh_formats(tmp_path, mesh) if p.suffix == f".{suffix}")
    grids = []
    for path in (chair_off, other):
        out = tmp_path / f"{path.suffix[1:]}.png"
        assert main(["render", str(path), "--out", str(out), "--size", "32", "--views", "6"]) == 0
        assert "2 rows x 6 views, 32 px" in capsys.readouterr().out  # the RGB row and the depth row
        grids.append(np.asarray(Image.open(out)))
    # Same triangles, same seed: the same sampled cloud and RGB views, so the same picture below the title
    # (which names the file; another chair differs in 8% of these pixels).
    assert np.array_equal(grids[0][40:], grids[1][40:])


def test_single_setting_and_point_cloud_inputs(tmp_path, capsys):
    cloud = np.random.default_rng(0).normal(size=(2, 300, 3)).astype(np.float32)
    h5 = write_h5(tmp_path / "scans.h5", cloud, [1, 2])
    out = tmp_path / "scan.png"
    args = ["render", str(h5), "--index", "1", "--points", "128", "--footprint", "square", "--dilation", "2"]
    assert main([*args, "--size", "32", "--out", str(out)]) == 0
    assert "1 rows x 10 views, 32 px" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["render", str(h5), "--index", "5", "--out", str(out)]) == 2
    assert "sample index 5 out of range" in capsys.readouterr().err


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.off"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing.off does not exist" in capsys.readouterr().err
    odd = tmp_path / "cloud.xyz"
    odd.write_text("0 0 0\n")
    assert main(["render", str(odd), "--out", str(tmp_path / "x.png")]) == 2
    assert "unsupported format '.xyz'" in capsys.readouterr().err
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.zeros((10, 3), np.float32))
    assert main(["render", str(cloud), "--out", str(tmp_path / "x.png")]) == 2
    assert "c.npy: the cloud has 10 points, fewer than the 1024 asked for" in capsys.readouterr().err
    assert main(["render", str(cloud), "--points", "8", "--rgb", "on", "--out", str(tmp_path / "x.png")]) == 2
    assert "needs a mesh with faces" in capsys.readouterr().err


def test_render_imports_no_clip_model_code(chair_off, tmp_path):
    """What slowed `clip2point render` down most (2-5 s of 6-9 s): every verb's import pulled in open_clip."""
    out = tmp_path / "grid.png"
    code = (
        "import sys; from clip2point.cli import main; "
        f"assert main(['render', {str(chair_off)!r}, '--out', {str(out)!r}, '--size', '16', '--views', '6']) == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('open_clip', 'torchvision', 'ray', 'mlflow')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
