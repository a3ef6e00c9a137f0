"""Procedural powder-bed builds: layer photos with per-pixel labels, calibrated to real cameras."""

from slmcnn.synth.build import SynthSettings, generate_build

__all__ = ["SynthSettings", "generate_build"]
