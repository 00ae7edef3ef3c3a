"""Render a point cloud or mesh to a PNG grid of depth views (and RGB views of a mesh): what the encoder sees.

Examples:
  clip2point render chair.off --out grid.png                     # official disk footprint, 10 views
  clip2point render chair.off --out fig4.png --compare           # one row per Table 5 setting (Fig. 4)
  clip2point render scan.h5 --index 3 --footprint square --dilation 2 --views 6 --out scan.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clip2point.commands.common import add_settings_arguments, settings_from_args
from clip2point.errors import InputError
from clip2point.settings import TABLE5_SETTINGS, RenderSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "input", type=Path, help="a .off/.ply/.obj/.stl/.glb/.gltf mesh, a .ply/.npy cloud, or an .h5 file"
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    add_settings_arguments(
        parser.add_argument_group("rendering (the config's render section)"), RenderSettings
    )
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument(
        "--compare", action="store_true", help="one row per rendering setting of Table 5 (its Fig. 4)"
    )
    parser.add_argument("--points", type=int, default=1024, help="points sampled from a mesh (default 1024)")
    parser.add_argument("--index", type=int, default=0, help="sample index in an .h5 file (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="surface-sampling seed (default 0)")
    parser.add_argument(
        "--align-modelnet", action="store_true", help="apply the ModelNet 'rot' alignment (ModelNet files)"
    )
    parser.add_argument(
        "--rgb",
        choices=("auto", "on", "off"),
        default="auto",
        help="add a row of RGB mesh renders (auto: for mesh inputs when headless OpenGL works)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from clip2point.data.files import MESH_SUFFIXES, load_mesh, load_points, mesh_cloud
    from clip2point.render import DepthRenderer, align_modelnet, official_views
    from clip2point.render.preview import depth_gray, save_view_grid, view_titles

    if not args.input.exists():
        raise InputError(f"input file {args.input} does not exist")
    mesh = load_mesh(args.input) if args.input.suffix.lower() in MESH_SUFFIXES else None
    if mesh is not None:  # read once: the cloud and the RGB row
        cloud = mesh_cloud(*mesh, args.points, args.seed, args.input)
    else:
        cloud = load_points(
            args.input, num_points=args.points, seed=args.seed, index=args.index, normalize=False
        )
    centre = cloud.mean(dim=0)
    scale = (cloud - centre).norm(dim=-1).max().clamp_min(1e-12)

    def place(xyz: torch.Tensor) -> torch.Tensor:
        """Unit-sphere normalisation of the sampled cloud (applied to the mesh too), then alignment."""
        xyz = (xyz - centre) / scale
        return align_modelnet(xyz) if args.align_modelnet else xyz

    points = place(cloud)
    chosen = settings_from_args(args, RenderSettings)
    views = official_views(chosen.views)
    rows = [
        (settings.label(), depth_gray(DepthRenderer(args.size, settings), points, views))
        for settings in (TABLE5_SETTINGS if args.compare else (chosen,))
    ]
    rgb = _rgb_row(args, mesh, place, views)
    if rgb is not None:
        rows.insert(0, ("RGB (mesh)", rgb))
    path = save_view_grid(
        rows, args.out, view_titles(views), title=f"{args.input.name}: {len(points)} points"
    )
    print(f"wrote {path} ({len(rows)} rows x {views.num_views} views, {args.size} px)")
    return 0


def _rgb_row(args, mesh, place, views):
    """RGB views ``(V, S, S, 3)`` uint8 of a mesh input, or None (not a mesh, ``--rgb off``, or no OpenGL)."""
    import torch

    if args.rgb == "off":
        return None
    if mesh is None or len(mesh[1]) == 0:
        if args.rgb == "on":
            raise InputError(f"--rgb on needs a mesh with faces; {args.input} has none")
        return None
    vertices, faces = mesh
    try:
        from clip2point.render.mesh import MeshRenderer

        renderer = MeshRenderer(image_size=args.size)
    except RuntimeError as err:  # no headless OpenGL: say so, still write the depth rows
        if args.rgb == "on":
            raise
        print(f"note: no RGB row: {err}")
        return None
    try:
        return renderer.render(place(torch.as_tensor(vertices, dtype=torch.float32)), faces, *views)
    finally:
        renderer.release()
