"""ONNX Runtime inference of the exported network, and the export it runs (kept in aot's cache
folder: exporting costs a whole process one to two seconds)."""

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from slmcnn import aot
from slmcnn.backends.base import Network
from slmcnn.constants import CLASSES
from slmcnn.files import atomic_path, check_new
from slmcnn.preprocess import prepare

log = logging.getLogger(__name__)


def export_onnx(
    model: torch.nn.Module, path: str | Path, patch: int = 128, force: bool = True, inputs: tuple = ()
) -> Path:
    """Write the network (standardised input -> logits) with a dynamic batch axis, whole or not at
    all; an existing file is replaced only with `force`, an input (the model file) never."""
    path = check_new(path, force, inputs)
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, patch, patch)
    with warnings.catch_warnings(), atomic_path(path) as temporary:  # TorchScript export needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            input_names=["patches"],
            output_names=["logits"],
            dynamic_axes={"patches": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def onnx_file(model: torch.nn.Module, int8: bool = False) -> Path:
    """The model's ONNX file from the cache, exported (and for `int8` quantized: dynamic, int8
    weights) when missing; in a temporary folder when the cache cannot be written."""
    path = aot.package_path(model, "int8" if int8 else "fp32").with_suffix(".onnx")
    if path.is_file():
        return path
    try:
        return _export(model, path, int8)
    except OSError as exc:
        log.warning("cannot write the ONNX file to %s (%s); exporting to a temporary folder", path.parent, exc)
        return _export(model, Path(tempfile.mkdtemp(prefix="slmcnn-")) / path.name, int8)


def _export(model: torch.nn.Module, path: Path, int8: bool) -> Path:
    patch = getattr(getattr(model, "spec", None), "patch", 128)
    if not int8:
        return export_onnx(model, path, patch)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.NullHandler()  # its logging.warning() would otherwise give the root logger a handler
    logging.root.addHandler(quiet)
    try:
        with atomic_path(path) as temporary:
            quantize_dynamic(str(onnx_file(model)), str(temporary), weight_type=QuantType.QInt8)
    finally:
        logging.root.removeHandler(quiet)
    return path


class OnnxBackend(Network):
    """ONNX Runtime inference, on the CPU, of `model` exported to `onnx_path` (the model itself
    gives the inner maps: `Network`)."""

    name = "onnx"

    def __init__(self, onnx_path: str | Path, model: torch.nn.Module, threads: int | None = None, batch: int = 64):
        import onnxruntime as ort

        super().__init__(model, "fp32", "cpu")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.batch = batch

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(patches), self.batch):
            x = prepare(patches[start : start + self.batch]).contiguous().numpy()
            logits = self.session.run(None, {self.input_name: x})[0]
            out.append(torch.softmax(torch.from_numpy(logits), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)
