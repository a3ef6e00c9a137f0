import json
import struct

import pytest
import torch

from slmcnn.checkpoint import ModelInfo, load_model, read_info, save_model
from slmcnn.errors import ModelFileError
from slmcnn.model import create_model


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = create_model("slmcnn-tiny")
    model.features[0][2].running_mean.fill_(0.5)
    path = save_model(model, tmp_path / "m.safetensors", ModelInfo(arch="slmcnn-tiny", metrics={"acc": 0.9}))
    loaded, info = load_model(path)
    assert info.arch == "slmcnn-tiny" and info.metrics == {"acc": 0.9} and info.classes == ["Powder", "Object", "Error"]
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def _rewrite_metadata(path, change):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    change(header["__metadata__"])
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def test_other_format_version_is_refused(tmp_path):
    path = save_model(create_model("slmcnn-tiny"), tmp_path / "m.safetensors", ModelInfo(arch="slmcnn-tiny"))
    _rewrite_metadata(path, lambda m: m.update(format_version="99"))
    with pytest.raises(ModelFileError, match="format 99"):
        read_info(path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = save_model(create_model("slmcnn-tiny"), tmp_path / "m.safetensors", ModelInfo(arch="slmcnn-tiny"))
    _rewrite_metadata(path, lambda m: m.update(info=m["info"].replace('"slmcnn-tiny"', '"slmcnn"')))
    with pytest.raises(ModelFileError, match="does not match architecture"):
        load_model(path)


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "x.safetensors")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
