"""The fault matrix: each fault the issues name, through the real Dagster path.

`make reliability` runs `python -m reliability`; see reliability/README.md.
"""
