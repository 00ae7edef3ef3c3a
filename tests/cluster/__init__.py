"""Tests of the cluster configs (cluster/) and clip2point.cluster."""
