"""Options from a file: ``bnnc.toml``, or ``[tool.bnnc]`` in ``pyproject.toml``; the command line wins.

One flat table of keys shared by every command, each reading the keys of its own options (``data`` all of
them; ``epochs`` and ``batch_size`` finetune and compress; ``uint8_input`` export and compress; the thresholds
and timing options report and compress), so a CI job names its data once. Unknown keys and wrong types are
errors that name the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, cast

from bnnc.errors import BnncError
from bnnc.usercode import FUNCTION_SPEC

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KEYS: dict[str, tuple[type, ...]] = {
    "data": (str,),
    "epochs": (int,),
    "batch_size": (int,),
    "max_accuracy_drop": (int, float),
    "min_compression": (int, float),
    "min_speedup": (int, float),
    "max_parity_mismatch": (int, float),
    "min_openvino_speedup": (int, float),
    "batch": (int,),
    "threads": (int,),
    "samples": (int,),
    "uint8_input": (bool,),
}
"""Every accepted key and its type(s)."""

RANGES: dict[str, tuple[float, float]] = {
    "epochs": (1, 100_000), "batch_size": (1, 1 << 20), "batch": (1, 1 << 16), "threads": (1, 256),
    "samples": (1, 1 << 31), "max_accuracy_drop": (0, 100), "min_compression": (0, 1e30), "min_speedup": (0, 1e30),
    "max_parity_mismatch": (0, 1), "min_openvino_speedup": (0, 1e30),
}
"""The values each numeric key accepts: the command line's limits, and finite."""


class ConfigError(BnncError):
    """A configuration file that can't be used as it is."""


def find_config(start: Path | None = None) -> Path | None:
    """``bnnc.toml`` in the working directory, else a ``pyproject.toml`` there with ``[tool.bnnc]``."""
    here = start or Path.cwd()
    if (here / "bnnc.toml").is_file():
        return here / "bnnc.toml"
    pyproject = here / "pyproject.toml"
    if pyproject.is_file():
        try:
            text = pyproject.read_text()
        except (OSError, UnicodeDecodeError):
            return None
        try:
            if "bnnc" in tomllib.loads(text).get("tool", {}):
                return pyproject
        except tomllib.TOMLDecodeError as e:
            if "[tool.bnnc" in text:  # its thresholds would be lost: a CI gate silently open
                raise ConfigError(f"{pyproject} is not valid TOML: {e}", "fix the file") from None
            return None
    return None


def load_config(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], Path | None]:
    """The options in ``path`` (or the file :func:`find_config` finds), checked; and the file read."""
    file = Path(path) if path is not None else find_config()
    if file is None:
        return {}, None
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}", "check the path given to --config")
    try:
        doc = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file} is not valid TOML: {e}", "fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"can't read {file}: {e}") from None
    table = doc.get("tool", {}).get("bnnc", {}) if file.name == "pyproject.toml" else doc
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [tool.bnnc] must be a table")
    return check(table, file), file


def check(table: dict[str, Any], where: Path | str) -> dict[str, Any]:
    """``table`` if every key is known and every value has its type; else a ConfigError naming the key."""
    for key, value in table.items():
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}", f"known keys: {', '.join(sorted(KEYS))}")
        types = KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{where}: {key} must be {expected}, got {type(value).__name__} {value!r}")
        if key in RANGES and not isinstance(value, bool):
            low, high = RANGES[key]
            if not low <= cast(float, value) <= high:  # NaN fails both
                raise ConfigError(f"{where}: {key} must be between {low:g} and {high:g}, got {value!r}")
        if key == "data" and isinstance(value, str) and FUNCTION_SPEC.match(value) and not Path(value).exists():
            raise ConfigError(f"{where}: data = {value!r} names code to run; a config file is data and can't",
                              f"pass --data {value} on the command line, or give a file or folder")
    return dict(table)


def merge(config: dict[str, Any], **cli: Any) -> dict[str, Any]:
    """Command-line values (those not None) over the file's."""
    return {**config, **{k: v for k, v in cli.items() if v is not None}}
