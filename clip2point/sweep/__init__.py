"""Sweeps: Ray Tune studies with MLflow nesting, results tables and resume."""
