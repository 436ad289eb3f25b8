"""Benchmarks: the fetch floor vs cdr_assets vs dlt `rest_api` on the same simulated day.

`python -m benchmarks.run` (or `make bench`) starts the simulator in its own process and runs
each contender in its own subprocess; see benchmarks/README.md. Never run by the test suite.
"""
