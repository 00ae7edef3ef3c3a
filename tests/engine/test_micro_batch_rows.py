"""What a pre-training step computes row by row before the depth encoder, in micro batches
(:func:`clip2point.engine.pretrain_step.rows_in_micro_batches`): the depth maps
(:func:`~clip2point.engine.pretrain_step.render_pair` with ``micro_batch``, jittered pair or one view) and the frozen
image encoder's features equal those of the whole batch in one call, the last micro batch smaller."""

from __future__ import annotations

import pytest
import torch

from clip2point.engine.pretrain_step import distance_factors, render_pair, rows_in_micro_batches
from clip2point.render import DepthRenderer, official_views
from tests.tiny_clip import random_images


def test_depth_pairs_rendered_in_micro_batches_equal_one_call():
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(5, 64, 3, generator=gen) * 2 - 1
    azim, elev, dist = (v[:5] for v in official_views(10))
    renderer = DepthRenderer(32)
    factors = distance_factors(5, 0, 1, gen)
    for pair, shape in ((factors, (5, 2, 3, 32, 32)), (None, (5, 1, 3, 32, 32))):  # jittered pair, one view
        whole = render_pair(renderer, points, azim, elev, dist, pair)
        assert whole.shape == shape and whole.std() > 0
        for micro in (1, 2, 5, 8):  # 5 micro batches, 2 + 2 + 1, one call, one call
            chunked = render_pair(renderer, points, azim, elev, dist, pair, micro)
            assert torch.equal(chunked, whole), (micro, shape)


def test_frozen_image_features_in_micro_batches_equal_one_call(tiny_bundle):
    encoder = tiny_bundle.image_encoder()
    images = random_images(5)
    whole = encoder(images)
    calls = []

    def counted(x):
        calls.append(x.shape[0])
        return encoder(x)

    chunked = rows_in_micro_batches(counted, 2, images)
    assert calls == [2, 2, 1] and not chunked.requires_grad
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert torch.equal(rows_in_micro_batches(counted, 5, images), whole) and calls[-1] == 5  # one call


def test_a_function_that_changes_the_row_count_is_refused():
    with pytest.raises(ValueError, match="gave 1 rows for 2"):
        rows_in_micro_batches(lambda x: x[:1], 2, torch.zeros(4, 3))
