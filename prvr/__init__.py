"""prvr: a reproducible pipeline for partially relevant video retrieval (PRVR).

The library imports without Snakemake; `prvr --help` lists the command-line stages and
`workflow/` wires them into one Snakemake DAG.
"""
__version__ = "0.1.0"
