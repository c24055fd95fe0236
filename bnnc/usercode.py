"""References to the user's own code — ``pkg.module:name`` or ``path/to/file.py:name`` — and importing them.

``--arch`` and ``--data`` name code the user wrote. A dotted module is imported with the working
directory on the path, as ``python -m`` does, so ``--arch mymodels:Net`` finds ``./mymodels.py``; a
file path is imported from that file with its folder on the path, as ``python file.py`` does, so its
own ``import layers`` of a sibling file works. A file reference is kept as an absolute path
(:func:`canonical`): a checkpoint records it, and later steps rebuild the model from any folder. The module sees
``sys.argv`` as a run with no arguments would, so a script that parses options at import gets its defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

_NAME = r"[A-Za-z_]\w*"
_MODULE = rf"(?:{_NAME}(?:\.{_NAME})*|.+\.py)"
FUNCTION_SPEC = re.compile(rf"^{_MODULE}:{_NAME}$")
"""A ``--data pkg.module:function`` (or ``file.py:function``) loader; config files may not name one."""

_REFUSED_TOP_LEVEL = {"torch", "builtins", "__main__"} | set(sys.stdlib_module_names)


def split(ref: str) -> tuple[str, str]:
    """``module:name`` -> ``(module, name)``, split at the last colon (a Windows path has one of its own)."""
    module, _, name = ref.rpartition(":")
    return module, name


def is_file(module: str) -> bool:
    """Whether the module part names a file (``models.py``, ``src/models``) rather than a dotted module."""
    return module.endswith(".py") or "/" in module or os.sep in module


def canonical(ref: str) -> str:
    """``ref`` with a file path made absolute (``~`` expanded); a dotted module's reference as it is."""
    module, name = split(ref)
    if not module or not is_file(module):
        return ref
    return f"{Path(module).expanduser().resolve()}:{name}"


def not_user_code(module: str) -> bool:
    """Whether ``module`` is one a reference may never name as code to call: the standard library, torch,
    ``__main__``, bnnc's own modules (but its sample architectures, ``bnnc.zoo``). A file is the user's."""
    if is_file(module):
        return False
    top = module.split(".")[0]
    return top in _REFUSED_TOP_LEVEL or (top == "bnnc" and module != "bnnc.zoo")


def import_module(module: str) -> ModuleType:
    """Import a dotted module (the working directory on the path) or a ``.py`` file (its folder on the path).

    A file is imported once a process, under a name made from its absolute path, so the student and the
    teacher built from it share their classes. Raises what the import raises (``FileNotFoundError`` for a
    file that isn't there).
    """
    if not is_file(module):
        with _on_path(os.getcwd()), bare_argv(module), _exit_as_error(module):
            return importlib.import_module(module)
    path = Path(module).expanduser().resolve()
    if path.suffix != ".py" or not path.is_file():
        raise FileNotFoundError(f"no Python file {path}")
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_bnnc_user_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"can't load {path} as a Python module")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # before running it: dataclasses and pickling look their module up by name
    try:
        with _on_path(str(path.parent)), bare_argv(str(path)), _exit_as_error(module):
            spec.loader.exec_module(loaded)
    except ImportError as exc:
        del sys.modules[name]
        if "relative import" not in str(exc) or (package := _package_of(path)) is None:
            raise
        with _on_path(str(path.parent)), _on_path(str(package[0])), bare_argv(str(path)), _exit_as_error(module):
            return importlib.import_module(package[1])  # as `python -m package.module` would
    except BaseException:
        del sys.modules[name]
        raise
    return loaded


def _package_of(path: Path) -> tuple[Path, str] | None:
    """The folder above the package ``path`` is in and its dotted name there (``models/net.py`` in a folder with an
    ``__init__.py``: ``models.net``), for a file whose relative imports need its package; None outside one."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return (folder, ".".join(parts)) if len(parts) > 1 else None


@contextlib.contextmanager
def bare_argv(program: str) -> Iterator[None]:
    """``sys.argv`` as the user's code would see it run with no arguments, while bnnc imports or calls it: a
    training script that parses its options (``argparse`` at module level, or in its model's or loader's code)
    gets its defaults, not bnnc's command line."""
    saved = sys.argv
    sys.argv = [program]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _exit_as_error(module: str) -> Iterator[None]:
    """An exit while the module is imported (``sys.exit``, argparse's error) as an error of the import, not bnnc's."""
    try:
        yield
    except SystemExit as exc:
        raise ImportError(f"importing {module} exited (SystemExit: {exc.code})") from None


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while the user's module is imported, as Python puts a script's."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
