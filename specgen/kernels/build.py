"""Building and loading specgen's CPU kernels (`csrc/`): compiled with the system C compiler on first use for this
machine and kept in `~/.cache/specgen` (or `$SPECGEN_CACHE`), then loaded once per process by ctypes. Where they
cannot be built (no C compiler, or `SPECGEN_CPU_KERNEL=0`), `library` says why once and returns None, and the
callers (`linear`, the draft rounds) compute in PyTorch instead."""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings

from .. import config
from ..utils import cpu_info

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
SOURCES = ["rows.c", "draft.c"]  # built into one library (with the header they share)
HEADERS = ["vec.h"]
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC"]
LIBS = ["-lm"]  # (after the sources)
_LIB: list = []  # [the loaded library, or None where it could not be built]


def library():
    """specgen's CPU kernels (`specgen/kernels/csrc`: the few-row product, and the Hydra++ draft round of draft.c) as a
    ctypes library, built on first use for this machine (-march=native, so the file's name carries the compiler,
    the CPU's flags and the sources' hash) and loaded once per process; None where it cannot be built, with one
    warning saying why and what runs instead."""
    if not _LIB:
        _LIB.append(_load())
    return _LIB[0]


def kernel():
    """The few-row product (`specgen/kernels/csrc/rows.c`: y = x @ W.T + b in fp32) as a ctypes function, or None where
    the library cannot be built (`library`)."""
    lib = library()
    return None if lib is None else lib.specgen_rows


def _load():
    cc = config.c_compiler()
    if cc is None:
        return _unavailable("no C compiler found (install gcc, or set CC)")
    try:
        source = b""
        for name in SOURCES + HEADERS:
            with open(os.path.join(CSRC, name), "rb") as f:
                source += f.read() + b"\0"
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return _unavailable(f"{type(e).__name__}: {e}")
    flags = cpu_info("flags") or cpu_info("Features")  # x86, ARM
    if flags is None:
        return _unavailable("no CPU flags in /proc/cpuinfo to key the -march=native build on")
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS + LIBS).encode(), version.encode(), flags.encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    cache = config.cache_dir()
    path = os.path.join(cache, f"kernels-{key}.so")
    if not os.path.exists(path):
        try:
            os.makedirs(cache, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)  # built aside, then moved in: never half a file
            os.close(fd)
            done = subprocess.run([cc, *FLAGS, "-o", tmp, *(os.path.join(CSRC, n) for n in SOURCES), *LIBS],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                os.unlink(tmp)
                return _unavailable(f"{cc} failed: {done.stderr.strip()[-500:]}")
            os.replace(tmp, path)
        except (OSError, subprocess.SubprocessError) as e:
            return _unavailable(f"{type(e).__name__}: {e}")
    try:
        lib = ctypes.CDLL(path)  # torch is loaded, so its OpenMP runtime (and thread pool) is shared
    except OSError as e:
        return _unavailable(f"{path} did not load ({e})")
    for name in ("specgen_rows", "specgen_rows_h"):
        getattr(lib, name).argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_int]
        getattr(lib, name).restype = None
    # (draft.c's functions take a weights struct: rounds.py declares them)
    return lib


def _unavailable(why: str) -> None:
    warnings.warn(f"specgen's CPU matmul kernel is unavailable ({why}); using PyTorch's products instead (same "
                  f"results up to rounding, slower decoding on the CPU). Set SPECGEN_CPU_KERNEL=0 to skip the "
                  f"attempt.", stacklevel=3)
    return None
