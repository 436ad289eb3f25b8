"""Shared fixtures: a simulator, an S3-compatible server and a PostgreSQL server on loopback."""

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.s3",
    "tests.fixtures.postgres",
]
