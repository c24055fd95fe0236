"""What a model file is, found out safely before anything is unpickled: missing, empty, a folder, a
TorchScript or ONNX file (refused with what to pass instead), a zip bomb, pickled objects (refused
unless the user trusts the file), a ``.safetensors`` file (raw tensors, read as such). :func:`torch_load`
is the one place bnnc calls ``torch.load`` on a user's model file.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from bnnc.errors import ModelLoadError, UntrustedModelError, first_line


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()



def check_readable(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file", "check the path")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not a model file", "pass the checkpoint file inside it")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty", "the file was not written completely; save the model again")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ModelLoadError(f"{path} can't be read: {e.strerror}", "check its permissions") from None


def zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


MAX_PICKLE_BYTES = 256 << 20
"""The largest pickle (``data.pkl``) or compressed entry bnnc unpacks from a torch archive: a state dict's
pickle is kilobytes (the tensors are separate, uncompressed entries), so a bigger one is a zip bomb."""


def archive_problem(path: Path) -> str | None:
    """Why the torch zip archive at ``path`` must not be read (an oversized pickle or compressed entry), or None."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                pickled = info.filename.endswith(".pkl")
                if (pickled or info.compress_type != zipfile.ZIP_STORED) and info.file_size > MAX_PICKLE_BYTES:
                    return (f"its entry {info.filename} unpacks to {info.file_size / 2**30:.1f} GiB "
                            f"({info.compress_size:,} bytes stored)")
    except (zipfile.BadZipFile, OSError):
        return None
    return None


def _looks_like_onnx(path: Path) -> bool:
    """An ONNX ModelProto starts with field 1 (ir_version, a varint: byte 0x08) and parses."""
    if path.suffix.lower() == ".onnx":
        return True
    with open(path, "rb") as f:
        if f.read(1) != b"\x08":
            return False
    try:
        import onnx

        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not ONNX after all
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0


def refuse_other_formats(path: Path) -> None:
    names = zip_names(path)
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        raise ModelLoadError(
            f"{path} is a TorchScript archive; bnnc needs the eager PyTorch model",
            "save model.state_dict() (before torch.jit.script/trace) and pass --arch pkg.module:factory",
        )
    if not names and _looks_like_onnx(path):
        raise ModelLoadError(
            f"{path} is an ONNX model; bnnc converts PyTorch models",
            "pass the PyTorch checkpoint the ONNX file was exported from",
        )


def is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON object (``{``) of that length.
    A torch archive starts ``PK``, a legacy pickle with 0x80: neither reads as a plausible length."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and 2 <= struct.unpack("<Q", head[:8])[0] < 1 << 32 and head[8:] == b"{"


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors`` file (Hugging Face's format: tensors and a JSON header, no code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({first_line(e)})",
                             "check that it was written completely") from None


def torch_load(path: Path, trust_model: bool) -> Any:
    if is_safetensors(path):
        return _load_safetensors(path)
    if (problem := archive_problem(path)) is not None:
        raise ModelLoadError(f"{path} is not a checkpoint bnnc will unpack: {problem}",
                             "save the model with torch.save(model.state_dict(), path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():  # not pickled objects: a corrupt file
            raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint ({first_line(e)})",
                                 "check that it was written by torch.save and copied completely") from None
        if not trust_model:
            raise UntrustedModelError(
                f"{path} contains pickled Python objects (e.g. a whole nn.Module); "
                "loading it would run code from the file",
                "pass --trust-model only if you trust its author, or save model.state_dict() "
                "and pass --arch pkg.module:factory",
            ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt files
        raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint ({first_line(e)})",
                             "check that it was written by torch.save and copied completely") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path} could not be unpickled even as a trusted file ({first_line(e)})",
                             "the classes it pickled must be importable here") from None


