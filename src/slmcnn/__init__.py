"""slmcnn: powder-bed monitoring for selective laser melting with a CNN and explanations.

    import slmcnn
    model = slmcnn.load_model()                                   # the shipped model, or a file
    for layer in slmcnn.predict_layers(["layer1.png", "layer2.png"], model):
        print(layer.path, layer.fractions)                        # LayerResult: classes, maps, fractions
    figures = slmcnn.explain_patches(patches, model)              # Integrated Gradients per patch

Importing slmcnn is cheap: the functions load torch and friends when first called.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from slmcnn.api import (
    calibrate,
    create_backend,
    explain_patches,
    load_model,
    predict_archive,
    predict_layers,
    teach,
    train,
)
from slmcnn.constants import CLASS_COLOURS, CLASSES, __version__  # noqa: F401 - the API's

__all__ = [
    "CLASSES",
    "CLASS_COLOURS",
    "LayerResult",
    "calibrate",
    "create_backend",
    "explain_patches",
    "load_model",
    "predict_archive",
    "predict_layers",
    "teach",
    "train",
]


class _Package(types.ModuleType):
    """`slmcnn.train` is the API's function (api.train), also once the module slmcnn/train.py is imported
    (importing a submodule would otherwise set the package attribute of its name to the module;
    `from slmcnn.train import fit` still finds the module in sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "LayerResult":
        from slmcnn.predict import LayerResult

        return LayerResult
    raise AttributeError(f"module 'slmcnn' has no attribute {name!r}")
