"""The authors' checkpoint layouts (docs/method.md section 6) written out from key names and shapes, with
random values, and their official adapter's forward pass: test data independent of our modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.tiny_clip import EMBED, PATCH, SIZE, WIDTH

LAYERS = 2
BLOCK = (
    ("ln_1.weight", (WIDTH,)),
    ("ln_1.bias", (WIDTH,)),
    ("attn.in_proj_weight", (3 * WIDTH, WIDTH)),
    ("attn.in_proj_bias", (3 * WIDTH,)),
    ("attn.out_proj.weight", (WIDTH, WIDTH)),
    ("attn.out_proj.bias", (WIDTH,)),
    ("ln_2.weight", (WIDTH,)),
    ("ln_2.bias", (WIDTH,)),
    ("mlp.c_fc.weight", (4 * WIDTH, WIDTH)),
    ("mlp.c_fc.bias", (4 * WIDTH,)),
    ("mlp.c_proj.weight", (WIDTH, 4 * WIDTH)),
    ("mlp.c_proj.bias", (WIDTH,)),
)


def official_visual_shapes() -> dict[str, tuple[int, ...]]:
    """OpenAI VisionTransformer key names and shapes, written out from docs/method.md section 6."""
    tokens = (SIZE // PATCH) ** 2 + 1
    shapes = {
        "conv1.weight": (WIDTH, 3, PATCH, PATCH),
        "class_embedding": (WIDTH,),
        "positional_embedding": (tokens, WIDTH),
        "ln_pre.weight": (WIDTH,),
        "ln_pre.bias": (WIDTH,),
        "ln_post.weight": (WIDTH,),
        "ln_post.bias": (WIDTH,),
        "proj": (WIDTH, EMBED),
    }
    for i in range(LAYERS):
        shapes |= {f"transformer.resblocks.{i}.{name}": shape for name, shape in BLOCK}
    return shapes


def random_official_visual(prefix: str, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {prefix + k: 0.05 * torch.randn(s, generator=g) for k, s in official_visual_shapes().items()}


def official_depth_file(seed: int = 0) -> dict[str, torch.Tensor]:
    """A best_eval.pth-style dict: DataParallel keys, depth + image encoders, balance, selector buffers."""
    state = random_official_visual("module.point_model.", seed) | random_official_visual(
        "module.image_model.", 99
    )
    state["module.weights"] = torch.tensor(0.75)
    state["module.selector.view_selector.views_azim"] = torch.zeros(10)
    return state


def official_adapter(prefix: str, views: int, seed: int) -> dict[str, torch.Tensor]:
    """The official SimplifiedAdapter keys with random values."""
    g = torch.Generator().manual_seed(seed)

    def bn(name: str) -> dict[str, torch.Tensor]:
        return {
            f"{name}.weight": 1 + 0.1 * torch.randn(EMBED, generator=g),
            f"{name}.bias": 0.1 * torch.randn(EMBED, generator=g),
            f"{name}.running_mean": 0.1 * torch.randn(EMBED, generator=g),
            f"{name}.running_var": 0.5 + torch.rand(EMBED, generator=g),
            f"{name}.num_batches_tracked": torch.tensor(7),
        }

    state = {"fusion_ratio": 0.5 + 0.1 * torch.randn(views, generator=g)}
    state |= bn("global_f.0.bn") | bn("global_f.4")
    state["global_f.3.weight"] = 0.1 * torch.randn(EMBED, views * EMBED, generator=g)
    state["global_f.3.bias"] = 0.1 * torch.randn(EMBED, generator=g)
    state["global_f.7.weight"] = 0.1 * torch.randn(EMBED, EMBED, generator=g)
    state["global_f.7.bias"] = 0.1 * torch.randn(EMBED, generator=g)
    return {prefix + k: v for k, v in state.items()}


def official_adapter_forward(state: dict, prefix: str, feats: torch.Tensor) -> torch.Tensor:
    """The official global aggregator in eval mode, written from the key names: (B, V, C) -> (B, C)."""
    b, v, c = feats.shape

    def bn(x, name):
        return F.batch_norm(
            x,
            state[f"{prefix}{name}.running_mean"],
            state[f"{prefix}{name}.running_var"],
            state[f"{prefix}{name}.weight"],
            state[f"{prefix}{name}.bias"],
        )

    x = feats * state[f"{prefix}fusion_ratio"].view(1, v, 1)
    x = bn(x.reshape(b * v, c), "global_f.0.bn").reshape(b, v * c)
    x = F.relu(
        bn(F.linear(x, state[f"{prefix}global_f.3.weight"], state[f"{prefix}global_f.3.bias"]), "global_f.4")
    )
    return F.linear(x, state[f"{prefix}global_f.7.weight"], state[f"{prefix}global_f.7.bias"])
