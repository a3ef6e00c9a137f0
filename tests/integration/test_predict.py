import csv
import json

import numpy as np
import pytest

from slmcnn.backends import TorchBackend
from slmcnn.explain import explain
from slmcnn.predict import LayerResult, Predictor
from tests.conftest import run_cli


def test_predict_layer_cli_writes_schema(tiny_build, tiny_model_file, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "predict-layer",
        tiny_build / "layers",
        "--out",
        out,
        "--model",
        tiny_model_file,
        "--stride",
        "64",
        "--truth",
        tiny_build / "masks",
        "--backend",
        "torch",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "00001.json").read_text())
    assert set(doc) >= {
        "image",
        "width",
        "height",
        "patch",
        "stride",
        "classes",
        "grid",
        "probabilities",
        "fractions",
        "model",
        "seconds",
    }
    assert (doc["width"], doc["height"], doc["patch"], doc["stride"]) == (384, 384, 128, 64)
    assert np.array(doc["grid"]).shape == (5, 5) and np.array(doc["probabilities"]).shape == (5, 5, 3)
    assert sum(doc["fractions"].values()) == pytest.approx(1.0)
    assert "pixel_iou" in doc["truth"]
    assert (out / "00001.overlay.png").is_file() and (out / "00001.classes.png").is_file()
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 10 and rows[0]["tile_accuracy"]


def test_bad_layers_are_skipped_with_exit_1(tiny_build, tiny_model_file, tmp_path, write_image):
    broken = write_image("in/broken.png", np.zeros((256, 256, 3), np.uint8))
    broken.write_bytes(broken.read_bytes()[:100])
    write_image("in/small.png", np.zeros((64, 64), np.uint8))
    write_image("in/gray16.png", (np.arange(200 * 300, dtype=np.uint32).reshape(200, 300) % 65535).astype(np.uint16))
    out = tmp_path / "out"
    (out).mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("predict-layer", tmp_path / "in", "--out", out, "--model", tiny_model_file, "--force")
    assert result.returncode == 1
    assert "broken.png" in result.stdout + result.stderr and "smaller than one patch" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "gray16.overlay.png").is_file() and (out / "keep.txt").read_text() == "mine"
    assert json.loads((out / "gray16.json").read_text())["width"] == 300


def test_predict_patches_json_and_report(tiny_build, tiny_model_file):
    result = run_cli("predict-patches", tiny_build / "patches", "--model", tiny_model_file, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and set(rows[0]) == {"image", "true", "predicted", "probabilities"}
    assert rows[0]["true"] in ("Powder", "Object", "Error")
    text = run_cli("predict-patches", tiny_build / "patches", "--model", tiny_model_file)
    assert "confusion matrix" in text.stdout and "macro avg" in text.stdout


def test_explain_cli_writes_figures(tiny_build, tiny_model_file, tmp_path):
    patch = next((tiny_build / "patches" / "Object").glob("*.png"))
    result = run_cli(
        "predict-patches",
        patch,
        "--model",
        tiny_model_file,
        "--explain",
        "--steps",
        "8",
        "--out",
        tmp_path,
        "--target",
        "Error",
        "--baseline",
        "blur",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"{patch.stem}.ig.png").is_file()
    assert "convergence delta" in result.stderr


def test_explain_cli_refuses_adaptive_bf16_before_any_work(tiny_build, tiny_model_file, tmp_path):
    patch = next((tiny_build / "patches" / "Object").glob("*.png"))
    args = ("predict-patches", patch, "--model", tiny_model_file, "--explain", "--out", tmp_path / "ig")
    result = run_cli(*args, "--ig-precision", "bf16")
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "slmcnn predict-patches: error: --method adaptive needs --ig-precision fp32; "
        "with bf16 use a fixed rule such as gausslegendre"
    ]
    assert not (tmp_path / "ig").exists()
    fixed = run_cli(*args, "--ig-precision", "bf16", "--method", "gausslegendre", "--steps", "4")
    assert fixed.returncode == 0, fixed.stderr


def test_integrated_gradients_completeness(tiny_model):
    import torch

    patches = np.random.default_rng(3).integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    explanations = explain(tiny_model, patches, steps=64, precision="fp32")
    from slmcnn.preprocess import standardise, to_unit_tensor

    with torch.no_grad():
        probs = torch.softmax(tiny_model(standardise(to_unit_tensor(patches))), 1)
        base = torch.softmax(tiny_model(torch.zeros(1, 3, 128, 128)), 1)
    for i, e in enumerate(explanations):
        difference = float(probs[i, e.target] - base[0, e.target])
        assert e.attribution.sum() == pytest.approx(difference, abs=abs(e.delta) + 1e-4)
        assert abs(e.delta) < 0.05


def test_predict_layer_explain_writes_heatmap(tiny_model_file, tmp_path, write_image):
    write_image("l/a.png", np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8))
    result = run_cli(
        "predict-layer",
        tmp_path / "l",
        "--out",
        tmp_path / "o",
        "--model",
        tiny_model_file,
        "--explain",
        "--steps",
        "4",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "a.attribution.png").is_file()


def test_adaptive_rule_refines_where_the_trapezoid_is_wrong(tiny_model):
    import torch
    from captum.attr import IntegratedGradients

    from slmcnn.explain import refined_path, trapezoid_weights

    class Step(torch.nn.Module):  # output jumps between alpha 0.6 and 0.7 of the path
        def forward(self, x):
            level = x.mean((1, 2, 3))
            p = torch.sigmoid((level - 0.65) * 200)
            return torch.stack([1 - p, p], 1)

    x, base = torch.ones(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    nodes = refined_path(IntegratedGradients(Step()), x, base, 1, steps=40, batch=8)
    alphas = [n.alpha for n in nodes]
    assert len(nodes) == 40 and alphas == sorted(alphas) and alphas[0] == 0 and alphas[-1] == 1
    assert sum(0.6 <= a <= 0.7 for a in alphas) >= 12  # a uniform grid puts 4 of 40 there
    change = nodes[-1].value - nodes[0].value
    refined = sum(w * n.slope for w, n in zip(trapezoid_weights(nodes), nodes))
    uniform = np.linspace(0, 1, 40)
    level = torch.tensor(uniform)
    slopes = 200 * torch.sigmoid((level - 0.65) * 200) * (1 - torch.sigmoid((level - 0.65) * 200))
    uniform_sum = float(np.trapezoid(slopes.numpy(), uniform))
    assert abs(refined - change) < abs(uniform_sum - change) / 5  # measured: 0.019 vs 0.197

    patch = np.random.default_rng(5).integers(0, 255, (1, 128, 128, 3), dtype=np.uint8)
    adaptive = explain(tiny_model, patch, steps=48)[0]
    dense = explain(tiny_model, patch, steps=1000, method="riemann_trapezoid")[0]
    assert np.corrcoef(adaptive.attribution.ravel(), dense.attribution.ravel())[0, 1] > 0.99


def test_one_path_is_one_layer_and_arrays_are_layers_too(tiny_build, tiny_model):
    predictor = Predictor(TorchBackend(tiny_model), 128)
    path = str(tiny_build / "layers" / "00001.png")
    (single,) = list(predictor.predict(path))
    assert isinstance(single, LayerResult) and str(single.path) == path
    gray = np.full((256, 384), 90, np.uint8)
    results = list(predictor.predict([gray, ("named", gray)]))
    assert [str(r.path) for r in results] == ["array-00000", "named"] and results[0].grid.shape == (2, 3)
    (alone,) = list(predictor.predict(gray))
    assert alone.class_map.shape == (256, 384)


def test_run_layers_scores_explains_and_writes(tiny_build, tiny_model, tmp_path):
    from slmcnn.outputs import RunFiles
    from slmcnn.pipeline import RunOptions, run_layers

    backend, layers = TorchBackend(tiny_model), sorted((tiny_build / "layers").glob("*.png"))[:2]
    options = RunOptions(truth=tiny_build / "masks", stride=64)
    with RunFiles(tmp_path, ("overlay", "json"), layers, html_title="{layers} layers") as files:
        outcomes = list(run_layers([*layers, tmp_path / "missing.png"], backend, options, files=files))
    first, second, missing = outcomes
    assert 0 <= first.score.tile_accuracy <= 1 and second.score is not None
    assert sum(t.support for t in first.score.tiles.values()) == 25 and set(first.files) == {"overlay", "json"}
    assert all(path.is_file() for path in first.files.values())
    assert json.loads(first.files["json"].read_text())["truth"]["tile_accuracy"] == first.score.tile_accuracy
    assert missing.result is None and "no such file" in missing.error
    assert "2 layers" in (tmp_path / "index.html").read_text() and (tmp_path / "summary.csv").is_file()
    with pytest.raises(Exception, match="model"):
        run_layers(layers, backend, RunOptions(explain=True))
    explained = RunOptions(explain=True, explain_steps=2)
    with RunFiles(tmp_path / "ig", ("attribution",), summary=False) as files:
        (outcome,) = run_layers(layers[0], backend, explained, files=files, model=tiny_model)
    assert outcome.attribution.shape == (384, 384) and outcome.files["attribution"].is_file()
