import numpy as np

from slmcnn.backends import OnnxBackend, TorchBackend, create_backend
from slmcnn.backends.onnxrt import export_onnx
from slmcnn.export import max_probability_difference
from slmcnn.images import read
from slmcnn.tiles import tile
from tests.conftest import run_cli


def test_onnx_matches_torch_on_random_and_real_patches(tiny_model, tiny_build, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    random = np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    layer = tile(read(tiny_build / "layers" / "00003.png"), 128).patches
    assert max_probability_difference(tiny_model, path, random) < 1e-4
    assert max_probability_difference(tiny_model, path, layer) < 1e-4


def test_backends_agree_on_tiles(tiny_model, tiny_build):
    patches = np.concatenate([tile(read(p), 128).patches for p in sorted((tiny_build / "layers").glob("*.png"))])
    reference = TorchBackend(tiny_model, "fp32").probabilities(patches).argmax(1)
    for backend in (create_backend(tiny_model, "onnx"), create_backend(tiny_model, "torch", "bf16")):
        agreement = (backend.probabilities(patches).argmax(1) == reference).mean()
        assert agreement >= 0.95, (backend.name, agreement)
    assert isinstance(create_backend(tiny_model, "onnx"), OnnxBackend)


def test_export_cli(tiny_model_file, tiny_build, tmp_path):
    out = tmp_path / "m.onnx"
    result = run_cli("export", tiny_model_file, "--out", out, "--check", tiny_build / "layers" / "00001.png")
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "max |p_torch - p_onnx|" in result.stdout


def test_compiled_backend_matches_eager(tiny_model, tiny_build):
    patches = tile(read(tiny_build / "layers" / "00002.png"), 128).patches
    compiled = TorchBackend(tiny_model, "fp32", compile=True)
    np.testing.assert_allclose(
        compiled.probabilities(patches), TorchBackend(tiny_model).probabilities(patches), atol=1e-4
    )
    assert compiled.probabilities(patches[:3]).shape == (3, 3)  # another batch size, no recompilation needed
    import torch._inductor.config as inductor

    assert not inductor.freezing  # frozen weights for this compilation only, not the whole process
