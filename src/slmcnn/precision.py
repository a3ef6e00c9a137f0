"""Which float precision the network runs in: bf16 where this CPU computes it natively, else fp32.
Shared by the backends, training and the camera profile's feature pass."""

import torch

from slmcnn.errors import SettingsError

PRECISIONS = ("auto", "fp32", "bf16")


def bf16_supported() -> bool:
    """True when this CPU runs bfloat16 matrix kernels natively (AVX-512 BF16 or AMX)."""
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


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16 where the CPU computes it natively, else fp32."""
    if precision not in PRECISIONS:
        raise SettingsError(f"`precision` must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision
