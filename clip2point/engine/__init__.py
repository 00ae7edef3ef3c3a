"""The loops: feature extraction, zero-shot evaluation (pre-training and adapter training to follow)."""
