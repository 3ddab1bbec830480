"""The project's error base class.

Every error caused by bad input (a corrupt video, a missing file, an unknown id, a malformed
annotation line, a bad config value) derives from `PrvrError`; its message is one line that names
the file and what is wrong. The CLI and the Snakemake scripts print that line instead of a traceback.
"""


class PrvrError(Exception):
    """Bad input; str(err) is a one-line message naming the file and the problem."""
