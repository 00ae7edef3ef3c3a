"""The loops, each on an :class:`~clip2point.engine.context.Experiment`: feature extraction and its cache,
zero-shot evaluation, few-shot adapter training, DPA checkpoint evaluation, and pre-training on Ray Train."""
