"""Strict YAML reading for config and ablation files: a duplicate key is an error, not "last wins".

    data = read_yaml_mapping("config/config.yaml")   # dict; ConfigError naming file and line otherwise
"""
from __future__ import annotations

from pathlib import Path

import yaml

from prvr.errors import ConfigError


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, mark):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.problem_mark = key, mark


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, StrictLoader.construct_mapping)


def read_yaml_mapping(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, bad YAML or a duplicate key is a one-line ConfigError."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=StrictLoader)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: file not found") from None
    except _DuplicateKey as err:
        raise ConfigError(f"{path}: duplicate key {err.key!r} at line {err.problem_mark.line + 1} "
                          f"(YAML would keep only the last one)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{line}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data
