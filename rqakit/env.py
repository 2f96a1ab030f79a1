"""Environment variables set for a block and restored after it."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def environment(**values: str):
    """Set each `name=value` for the block, then restore it as it was (unset where it was unset)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# CPU kernels that do not depend on the instruction set (`runtime.kernels: portable`): ATen's
# scalar kernels, MKL's conditional-numerical-reproducibility path, oneDNN and OpenBLAS capped to
# SSE, one thread each. An fp32 run then computes the same bits on any x86-64 CPU (the toy's
# committed numbers are checked exactly); they must be set before the libraries load.
PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41",
                    "OPENBLAS_CORETYPE": "Prescott", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1"}


def portable_kernels_active() -> bool:
    """This process was started with `PORTABLE_KERNELS` in its environment."""
    return all(os.environ.get(name) == value for name, value in PORTABLE_KERNELS.items())


def kernel_variables(kernels: str) -> dict[str, str]:
    """The variables a process computing under `runtime.kernels` must start with."""
    return dict(PORTABLE_KERNELS) if kernels == "portable" else {}
