"""Writing outputs: one rule for what may be written where, checked before any work, and writes that
are atomic (a reader never sees half a file; an existing file is replaced only when asked)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from bnnc.errors import OutputError


def check_output(path: str | os.PathLike[str], *, inputs: tuple[Any, ...] = (), overwrite: bool = False) -> None:
    """:func:`check_outputs` for one output."""
    check_outputs((path,), inputs, overwrite=overwrite)


def check_outputs(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[Any] = (), *,
                  overwrite: bool = False) -> None:
    """One rule for every command's outputs (side files included), checked before any work.

    An output is refused when it is one of the ``inputs`` (model, data, teacher, FP32 model, ONNX,
    config, resume state: anything path-like; the same file by resolved path or by inode, so a hard
    link or a symlink counts) or a file inside an input folder; when two outputs are one file; when it
    exists and isn't a regular file (a device, a FIFO, a folder), even with ``overwrite``; when it exists
    without ``overwrite``; when its folder is missing or not writable.
    """
    sources = [Path(os.fspath(i)).expanduser() for i in inputs if isinstance(i, (str, os.PathLike))]
    sources = [i for i in sources if i.exists()]
    seen: dict[Path, Path] = {}
    for raw in outputs:
        text = os.fspath(raw)
        if text.endswith(("/", os.sep)):
            raise OutputError(f"the output {text} names a folder", "give a file name, e.g. -o model.bnnc")
        path = Path(text)
        key = path.resolve()
        if key in seen:
            raise OutputError(f"{seen[key]} and {path} are one file, given for two outputs", "give each its own path")
        seen[key] = path
        for src in sources:
            if _same_file(path, src) or (src.is_dir() and path.exists() and key.is_relative_to(src.resolve())):
                raise OutputError(f"the output {path} is the input {src}", "choose another output path")
        if path.exists() and not path.is_file():
            what = "a directory" if path.is_dir() else "not a regular file"
            raise OutputError(f"the output {path} is {what}", "give the path of a new or regular file")
        if path.exists() and not overwrite:
            raise OutputError(f"{path} already exists", "pass --force to overwrite it, or choose another -o")
        if not path.parent.is_dir():
            raise OutputError(f"the folder {path.parent} does not exist", "create it first, or choose another -o")
        try:  # creating a file is the only reliable test: permissions don't bind root, read-only mounts do
            fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        except OSError as e:
            raise OutputError(f"can't write in the folder {path.parent} ({e.strerror})", "choose another -o") from None
        os.close(fd)
        os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``path`` (an advisory ``flock``, released by the kernel if the process
    dies) for a long write such as fine-tuning: a second bnnc writing the same output stops with one line."""
    import fcntl

    target = Path(path)
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another bnnc is writing {target}",
                              "wait for it to finish, or choose another -o") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *,
                 overwrite: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.

    Without ``overwrite`` an existing file is never replaced, even if it appears meanwhile.
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"can't write in {path.parent}: {e.strerror}", "choose another -o") from None
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile: never clobber
            except FileExistsError:
                raise OutputError(f"{path} already exists", "pass --force to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data), overwrite=overwrite)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

