"""Small helpers shared by the core: defaults, device and dtype choice, timing."""
from __future__ import annotations

import time
import warnings
from contextlib import contextmanager

import torch


def exists(x) -> bool:
    return x is not None


def default(x, d):
    return x if exists(x) else d


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the one asked for, else CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here: use --device cpu")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def cpu_info(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo ("model name", "flags"); None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(field)), None)
    except OSError:
        return None


def cpu_bf16_native() -> bool | None:
    """Whether this x86 CPU computes bf16 matmuls natively (AVX512-BF16 or AMX); None where that cannot be read.
    Without them PyTorch emulates bf16 on the CPU and a wide (verify) forward costs far more than in fp32."""
    flags = cpu_info("flags")
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The compute dtype: the one asked for, else bf16 on CUDA (fp16 where bf16 is missing) and fp32 on the CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(set(_DTYPES))} or 'auto'")
    if device.type == "cpu" and _DTYPES[dtype] != torch.float32 and cpu_bf16_native() is False:
        warnings.warn(f"{dtype} on a CPU without AVX512-BF16/AMX runs emulated: speculative (wide) forwards get "
                      "much slower than in float32 here; leave --dtype out (float32 on the CPU)", stacklevel=2)
    return _DTYPES[dtype]


def resolve_mixed_precision(choice: str, cpu_only: bool = False) -> str:
    """Training autocast: 'auto' is bf16 on CUDA and on CPUs that compute bf16 natively, else 'no' (emulated bf16
    made a head-training step about 40x slower than fp32 on an AVX2-only CPU)."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and not cpu_only:
        return "bf16"
    return "bf16" if cpu_bf16_native() else "no"


class Timer:
    """Accumulates wall seconds under named keys; synchronises CUDA so the split between phases is real."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, key: str):
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.totals[key] = self.totals.get(key, 0.0) + time.perf_counter() - t0

    def get(self, key: str) -> float:
        return self.totals.get(key, 0.0)
