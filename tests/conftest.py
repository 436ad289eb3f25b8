"""Shared fixtures: a simulator on loopback and an S3-compatible server on loopback."""

pytest_plugins = ["tests.fixtures.simulator", "tests.fixtures.s3"]
