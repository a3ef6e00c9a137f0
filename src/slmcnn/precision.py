"""Where the network runs and in which float precision: the CPU or a CUDA GPU, bf16 where that
device computes it natively, else fp32. Shared by the backends, training and the camera profile's
feature pass, so `--device` and `--precision` mean the same to every command."""

from contextlib import AbstractContextManager

import torch

from slmcnn.errors import SettingsError

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: "str | torch.device" = "auto") -> torch.device:
    """`auto` -> the CUDA GPU when this PyTorch sees one, else the CPU; `cuda` without one is refused
    in one line (never a silent fall back to the CPU)."""
    if isinstance(device, torch.device):
        device = device.type
    if device not in DEVICES:
        raise SettingsError(f"`device` must be one of {', '.join(DEVICES)} (got {device!r})")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise SettingsError(
            f"`device` cuda: PyTorch {torch.__version__} ({build}) sees no CUDA GPU; use `device` cpu or auto"
        )
    return torch.device(device)


def bf16_supported(device: "str | torch.device" = "cpu") -> bool:
    """True when the device runs bfloat16 matrix kernels natively: on the CPU AVX-512 BF16 or AMX,
    on a GPU compute capability 8.0 (Ampere) and later."""
    if torch.device(device).type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amx_supported() -> bool:
    """True when this CPU has AMX tiles: bf16 then beats every other engine by far (measured), so
    `auto` need not time the engines (backends/choice.py) to know."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: "str | torch.device" = "cpu") -> str:
    """`auto` -> bf16 where the device computes it natively, else fp32."""
    if precision not in PRECISIONS:
        raise SettingsError(f"`precision` must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on the device when `precision` is bf16; a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
