"""Moved to `slmcnn.backends` and `slmcnn.precision`; this name stays for scripts written against slmcnn 0.1."""

from slmcnn.backends import OnnxBackend, TorchBackend
from slmcnn.precision import bf16_supported

__all__ = ["OnnxBackend", "TorchBackend", "bf16_supported"]
