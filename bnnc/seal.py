"""Which architecture factories a checkpoint may make bnnc call.

A checkpoint names its architecture (``arch``, ``arch_kwargs``) so later steps rebuild the model
without ``--arch``. A file can name anything importable, so what it names is checked by
construction: an ``nn.Module`` subclass is always accepted (it builds a module), but a *function*
named by a file is called only if this user's bnnc wrote that name there — the user typed it as
``--arch`` when the checkpoint was made. bnnc proves that with a seal: an HMAC-SHA256 of the
reference and its arguments under a key only this user can read (``BNNC_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/bnnc``, else ``~/.config/bnnc``; file ``key``, mode 0600, made on first use).
A file from anyone else carries no valid seal, whatever function it names (``sympy:sympify``,
``bnnc.loading:load_model``...), so it is refused until the user allows the factory: ``--arch REF`` on
the command line, or ``BNNC_ALLOW_ARCH=REF[,REF...]`` in the environment (never a file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnnc.usercode import canonical

KEY_BYTES = 32


def config_dir() -> Path:
    """Where the key lives: ``BNNC_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/bnnc``, else ``~/.config/bnnc``."""
    if os.environ.get("BNNC_CONFIG_DIR"):
        return Path(os.environ["BNNC_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bnnc"


def _key(create: bool) -> bytes | None:
    """This user's key; made (atomically, 0600) when ``create`` and missing; None if unavailable."""
    path = config_dir() / "key"
    try:
        key = path.read_bytes()
        return key if len(key) == KEY_BYTES else None
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".key.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(tmp, path)  # fails if another process made the key first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        key = path.read_bytes()
        return key if len(key) == KEY_BYTES else None
    except OSError:
        return None


def _message(arch: str, kwargs: Mapping[str, Any]) -> bytes:
    return json.dumps({"arch": arch, "arch_kwargs": kwargs}, sort_keys=True, separators=(",", ":")).encode()


def seal(arch: str, kwargs: Mapping[str, Any]) -> str | None:
    """The seal recorded beside ``arch`` in a checkpoint; None where no key can be kept (the factory
    must then be named again with ``--arch`` by the steps that read the checkpoint)."""
    key = _key(create=True)
    return None if key is None else hmac.new(key, _message(arch, kwargs), hashlib.sha256).hexdigest()


def verify(arch: str, kwargs: Mapping[str, Any], tag: Any) -> bool:
    """Whether ``tag`` is this user's seal of ``arch`` with ``kwargs``."""
    key = _key(create=False)
    if key is None or not isinstance(tag, str):
        return False
    try:
        message = _message(arch, kwargs)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest(), tag)


def allowed(arch: str) -> bool:
    """Whether the user allowed ``arch`` for every command through ``BNNC_ALLOW_ARCH`` (comma-separated)."""
    allowed_refs = {canonical(a.strip()) for a in os.environ.get("BNNC_ALLOW_ARCH", "").split(",") if a.strip()}
    return canonical(arch) in allowed_refs
