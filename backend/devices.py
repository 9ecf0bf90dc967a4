"""Device selection and mixed-precision policy. torch is imported inside the functions that use
it, so the GUI can import the error phrases (``cpu_fallback_offered``) without loading torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

# The phrase every "CUDA was asked for but is missing" error contains; the GUI looks for it to offer
# a CPU run instead (``cpu_fallback_offered``).
CUDA_UNAVAILABLE = "CUDA is not available on this machine"


def cpu_fallback_offered(message: str) -> bool:
    """Whether an error message says the run asked for CUDA on a machine without it."""
    return CUDA_UNAVAILABLE in (message or "")


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when present; an unavailable CUDA request is a config error with the fix."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"runtime.device is {spec!r} but {CUDA_UNAVAILABLE}; set runtime.device "
                              f"= 'cpu' (or 'auto'; on the command line --set runtime.device=cpu) to train "
                              f"on the CPU")
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"runtime.device is {spec!r} but only {torch.cuda.device_count()} CUDA "
                              f"device(s) exist")
        return torch.device("cuda", index)
    if spec == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"runtime.device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def autocast_dtype(amp: str, device: torch.device):
    """bf16 autocast on CUDA for ``auto``/``bf16``; on CPU only when ``bf16`` is asked for."""
    import torch

    if amp == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if amp == "bf16" else None


def available_devices() -> list[str]:
    """'cpu' plus 'cuda:N' for every visible CUDA device (for the GUI's device picker)."""
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
