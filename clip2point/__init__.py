"""CLIP2Point: transfer CLIP to point-cloud classification through image-depth pre-training."""

__version__ = "0.1.0"
