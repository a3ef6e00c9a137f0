"""One .safetensors file per model: weights plus JSON metadata. Loading never unpickles anything."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slmcnn.constants import CLASS_COLOURS, CLASSES, __version__
from slmcnn.errors import ModelFileError, SettingsError
from slmcnn.files import atomic_path
from slmcnn.model import SlmCnn, create_model

FORMAT = "slmcnn-model"
FORMAT_VERSION = 1


@dataclass
class ModelInfo:
    """What a model file says about itself, beyond the weights."""

    arch: str
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    colours: dict[str, list[int]] = field(default_factory=lambda: {k: list(v) for k, v in CLASS_COLOURS.items()})
    patch: int = 128
    normalisation: str = "per-image standardisation (x-mean)/max(std,1/sqrt(N)) on [0,1] input"
    version: str = __version__
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    name: str = ""


def save_model(model: SlmCnn, path: str | Path, info: ModelInfo) -> Path:
    """Write weights and metadata to one file (contiguous float32 tensors, BN statistics included)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "info": json.dumps(info.__dict__)}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=meta)
    return path


def read_info(path: str | Path) -> ModelInfo:
    """Read only the metadata, checking that the file is an slmcnn model this version can load."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if not 0 < header_len < 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a safetensors model file ({exc})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not an slmcnn model")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{path} uses model format {meta.get('format_version')}, this slmcnn "
            f"({__version__}) reads format {FORMAT_VERSION}; re-export it with a matching version"
        )
    try:
        info = ModelInfo(**json.loads(meta["info"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} has unreadable metadata ({exc})") from None
    _check_info(info, path)
    return info


INFO_TYPES = {"arch": str, "classes": list, "colours": dict, "patch": int, "normalisation": str, "version": str}
INFO_TYPES.update(training=dict, metrics=dict, name=str)


def _check_info(info: ModelInfo, path: Path) -> None:
    """Metadata of the types and values this slmcnn can use: a crafted file is refused here, not
    deep inside prediction."""
    for name, kind in INFO_TYPES.items():
        value = getattr(info, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelFileError(f"{path}: metadata {name!r} is {type(value).__name__}, expected {kind.__name__}")
    if info.classes != list(CLASSES):
        raise ModelFileError(f"{path}: classes {info.classes[:5]} are not this slmcnn's {list(CLASSES)}")


def load_model(path: str | Path) -> tuple[SlmCnn, ModelInfo]:
    """Rebuild the network named in the file and load its weights (eval mode)."""
    info = read_info(path)
    model = create_model(info.arch)
    if info.patch != model.spec.patch:
        raise ModelFileError(
            f"{path}: patch {info.patch} does not match architecture {info.arch!r} ({model.spec.patch})"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is corrupt ({exc})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise ModelFileError(f"{path} holds NaN or infinite weights; it cannot classify anything")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(f"{path} does not match architecture {info.arch!r}: {first}") from None
    model.eval()
    return model, info


def default_model_path() -> Path:
    """The model shipped inside the package."""
    return Path(__file__).parent / "models" / "default.safetensors"


def resolve_model(path: str | Path | None) -> Path:
    """The user's model file, or the shipped one when none is given."""
    return Path(path) if path else default_model_path()


def open_model(path: str | Path | None = None) -> SlmCnn:
    """A model file (default: the shipped model) as a network in eval mode, with `model.info` (what
    the file says about it) and `model.source` (the file): `slmcnn.load_model`, for modules below
    the API."""
    if path is not None and not isinstance(path, str | Path):
        raise SettingsError(f"`path` must be a model file (got {type(path).__name__})")
    source = resolve_model(path)
    if path is None and not source.is_file():
        raise ModelFileError("no shipped model in this installation; give a model file or train one")
    model, info = load_model(source)
    model.info, model.source = info, source
    return model


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over the weights and BatchNorm statistics, by name: the one identity of a network (a
    camera profile names the network it needs by it, the compile cache keys its packages by it)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
