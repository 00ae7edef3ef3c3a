"""Command-line verbs: one module each, registered in clip2point.cli.VERBS."""
