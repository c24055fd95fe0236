"""Compiling and running the generated C: the machine's compiler, a tiny ctypes harness, object sizes.

The parity check and the report compile ``NAME.c`` with the machine's C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``) beside a harness that runs ``NAME_predict`` over many inputs and times it, load
the shared library with ``ctypes`` and compare with torch. ``-ffp-contract=off`` keeps ``s * a + b`` two
roundings, as torch computes it (the README snippet says so for users' builds too).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnnc.errors import ExportError
from bnnc.export.csource import Program

FLAGS = ("-std=c99", "-O3", "-ffp-contract=off")
"""What the check compiles with; ``-march=native`` is added for the host's SIMD kernels."""

CORTEX_M4 = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-std=c99",
             "-ffp-contract=off", "-ffunction-sections", "-fdata-sections")


def find_compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set, else the first of cc, gcc, clang on the PATH (None: none)."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"]) or os.environ["CC"]
    return next((shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def _harness(name: str) -> str:
    upper = name.upper()
    return f"""#define _POSIX_C_SOURCE 199309L
#include <time.h>
#include "{name}.h"

int bnnc_harness_run(const float *x, int n, float *y, int *labels) {{
    int i;
    for (i = 0; i < n; ++i) labels[i] = {name}_predict(x + (long)i * {upper}_INPUTS, y + (long)i * {upper}_OUTPUTS);
    return 0;
}}

int bnnc_harness_run_u8(const unsigned char *x, int n, float *y, int *labels) {{
#ifdef {upper}_HAS_U8
    int i;
    for (i = 0; i < n; ++i) labels[i] = {name}_predict_u8(x + (long)i * {upper}_INPUTS, y + (long)i * {upper}_OUTPUTS);
    return 0;
#else
    (void)x; (void)n; (void)y; (void)labels;
    return -1;
#endif
}}

/* nanoseconds per call of {name}_predict on one input, the median of `rounds` rounds of `reps` calls */
double bnnc_harness_time(const float *x, int reps, int rounds, double *each) {{
    static float y[{upper}_OUTPUTS];
    int r, i, j;
    for (i = 0; i < reps; ++i) {name}_predict(x, y);
    for (r = 0; r < rounds; ++r) {{
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (i = 0; i < reps; ++i) {name}_predict(x, y);
        clock_gettime(CLOCK_MONOTONIC, &b);
        each[r] = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / reps;
    }}
    for (i = 1; i < rounds; ++i)
        for (j = i; j > 0 && each[j] < each[j - 1]; --j) {{
            double t = each[j];
            each[j] = each[j - 1];
            each[j - 1] = t;
        }}
    return each[rounds / 2];
}}
"""


@dataclass
class Compiled:
    """A generated model compiled into a shared library with the harness, ready to run."""

    name: str
    inputs: int
    outputs: int
    library: Path
    _lib: ctypes.CDLL

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, outputs) and the returned classes (N,) of ``x`` (N, ...): float32, or uint8 pixels."""
        n = len(x)
        u8 = x.dtype == np.uint8
        flat = np.ascontiguousarray(x.reshape(n, -1), dtype=np.uint8 if u8 else np.float32)
        if flat.shape[1] != self.inputs:
            raise ValueError(f"inputs of {flat.shape[1]} values, the model takes {self.inputs}")
        y = np.zeros((n, self.outputs), np.float32)
        labels = np.zeros(n, np.int32)
        fn = self._lib.bnnc_harness_run_u8 if u8 else self._lib.bnnc_harness_run
        if fn(flat.ctypes.data_as(ctypes.c_void_p), n, y.ctypes.data_as(ctypes.c_void_p),
              labels.ctypes.data_as(ctypes.c_void_p)) != 0:
            raise ValueError("this model has no uint8 pixel entry point")
        return y, labels

    def latency_us(self, x: np.ndarray, min_seconds: float = 0.5, rounds: int = 7) -> float:
        """Median microseconds of one ``predict`` call on ``x`` (one input), timed inside C."""
        one = np.ascontiguousarray(x.reshape(-1)[: self.inputs], dtype=np.float32)
        each = np.zeros(rounds, np.float64)
        self._lib.bnnc_harness_time.restype = ctypes.c_double
        probe = self._lib.bnnc_harness_time(one.ctypes.data_as(ctypes.c_void_p), 3, 1,
                                            each.ctypes.data_as(ctypes.c_void_p))
        reps = max(10, int(min_seconds / rounds / max(probe * 1e-9, 1e-9)))
        ns = self._lib.bnnc_harness_time(one.ctypes.data_as(ctypes.c_void_p), reps, rounds,
                                         each.ctypes.data_as(ctypes.c_void_p))
        return float(ns) / 1e3


def compile_library(program: Program, folder: Path, *, compiler: str | None = None,
                    flags: tuple[str, ...] = FLAGS, native: bool = True) -> Compiled:
    """The program's ``NAME.c`` + the harness as a shared library in ``folder``, loaded."""
    name = program.name
    cc = compiler or find_compiler()
    if cc is None:
        raise ExportError("no C compiler found", "install one (apt-get install gcc) or set CC")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.h").write_text(program.header)
    (folder / f"{name}.c").write_text(program.source)
    (folder / "harness.c").write_text(_harness(name))
    lib = folder / f"lib{name}.so"
    cmd = [cc, *flags, *(["-march=native"] if native else []), "-fPIC", "-shared",
           "-o", str(lib),
           str(folder / f"{name}.c"), str(folder / "harness.c"), "-lm"]
    _run(cmd, "compile the generated C")
    return Compiled(name, int(np.prod(program.input_shape)), program.outputs, lib, ctypes.CDLL(str(lib)))


def _run(cmd: list[str], what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ExportError(f"could not {what}: {e}", "check the compiler (CC)") from None
    if done.returncode != 0:
        first = next((ln for ln in done.stderr.splitlines() if "error" in ln), done.stderr.strip()[:300])
        raise ExportError(f"could not {what}: {first}", "this is a bnnc bug if the compiler works: re-run with "
                          "--debug and report it")
    return done.stdout


@dataclass(frozen=True)
class ObjectSize:
    """``size`` of the compiled model: text (code + const weights: flash), data, bss (RAM)."""

    compiler: str
    flags: tuple[str, ...]
    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss

    def to_dict(self) -> dict[str, object]:
        return {"compiler": self.compiler, "flags": " ".join(self.flags), "text": self.text, "data": self.data,
                "bss": self.bss, "flash": self.flash, "ram": self.ram}


def object_size(program: Program, *, compiler: str | None = None,
                flags: tuple[str, ...] = ("-std=c99", "-Os", "-ffp-contract=off")) -> ObjectSize | None:
    """Compile the program's ``NAME.c`` alone to an object file and read its sections with ``size`` (the compiler's own,
    e.g. ``arm-none-eabi-size`` beside ``arm-none-eabi-gcc``); None without a compiler or ``size``."""
    cc = compiler or find_compiler()
    if cc is None:
        return None
    size_tool = shutil.which(cc[: -len("gcc")] + "size") if cc.endswith("gcc") else None
    size_tool = size_tool or shutil.which("size")
    if size_tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name = program.name
        (folder / f"{name}.h").write_text(program.header)
        (folder / f"{name}.c").write_text(program.source)
        obj = folder / f"{name}.o"
        _run([cc, *flags, "-c", "-o", str(obj), str(folder / f"{name}.c")], "compile the generated C")
        out = _run([size_tool, str(obj)], "read the object's size")
    fields = out.splitlines()[1].split()
    return ObjectSize(Path(cc).name, tuple(flags), int(fields[0]), int(fields[1]), int(fields[2]))
