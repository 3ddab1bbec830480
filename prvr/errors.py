"""The project's error base class.

Every error caused by bad input (a corrupt video, a missing file, an unknown id, a malformed
annotation line, a bad config value) derives from `PrvrError`; its message is one line that names
the file and what is wrong. The CLI and the Snakemake scripts print that line instead of a traceback.
"""


class PrvrError(Exception):
    """Bad input; str(err) is a one-line message naming the file and the problem."""


class ConfigError(PrvrError, ValueError):
    """A config file or value is wrong; the message names the file and the key.

    `key` is the dotted key at fault (e.g. "train.epochs") when there is one, so that a config
    assembled from several sources can name the source that set it."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class AnnotationError(PrvrError, ValueError):
    """An annotation file is missing or malformed; the message names the file and the line."""


class WriteError(PrvrError, OSError):
    """The file system refused an output (disk full, quota, read-only or immutable folder); the
    message names the file and the reason."""
