import numpy as np
import pytest

from slmcnn.backends import TorchBackend
from slmcnn.explain import explain
from slmcnn.predict import LayerFailure, LayerResult, Predictor


def test_predictor_batches_layers_and_keeps_order(tiny_model):
    rng = np.random.default_rng(0)
    layers = [(f"l{i}", rng.integers(0, 255, (256 + 32 * i, 300, 3), dtype=np.uint8)) for i in range(4)]
    results = list(Predictor(TorchBackend(tiny_model), 128, batch_tiles=20).predict(layers))
    assert [str(r.path) for r in results] == ["l0", "l1", "l2", "l3"]
    assert all(isinstance(r, LayerResult) for r in results)
    single = list(Predictor(TorchBackend(tiny_model), 128).predict(layers[2:3]))[0]
    np.testing.assert_allclose(results[2].probabilities, single.probabilities, atol=1e-5)
    assert results[1].class_map.shape == (288, 300)
    assert not any(isinstance(r, LayerFailure) for r in results)


@pytest.mark.parametrize("positive_scales", [True, False])
def test_bf16_explanations_keep_the_first_block_and_the_head_in_float32(tiny_model, positive_scales):
    import torch

    from slmcnn.explain import _Probability
    from slmcnn.preprocess import prepare

    if not positive_scales:  # unfoldable: the network's own blocks and classifier
        with torch.no_grad():
            tiny_model.features[1][2].weight[0] = -1.0
    patches = np.random.default_rng(4).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    with torch.no_grad():
        exact = _Probability(tiny_model, bf16=False)(prepare(patches))
        mixed = _Probability(tiny_model, bf16=True)
        probs = mixed(prepare(patches))
    exact_parts = ("dense", "last", "classifier", "weights.0", "biases.0", "features.0.")
    dtypes = {n: p.dtype for n, p in mixed.network.named_parameters()}
    assert {d for n, d in dtypes.items() if n.startswith(exact_parts)} == {torch.float32}
    assert {d for n, d in dtypes.items() if not n.startswith(exact_parts)} == {torch.bfloat16}
    assert probs.dtype == torch.float32
    assert torch.allclose(probs, exact, atol=0.02)
    assert next(tiny_model.parameters()).dtype == torch.float32  # the caller's model is untouched
    from slmcnn.folding import FoldedSlmCnn

    dense = mixed.network.dense if positive_scales else mixed.network.classifier[1]
    original = FoldedSlmCnn(tiny_model).dense if positive_scales else tiny_model.classifier[1]
    assert torch.equal(dense.weight, original.weight)  # never rounded through bf16


def test_adaptive_rule_in_bf16_is_refused(tiny_model):
    from slmcnn.errors import SettingsError

    with pytest.raises(SettingsError, match="fp32"):
        explain(tiny_model, np.zeros((1, 128, 128, 3), np.uint8), precision="bf16")
    bf16 = explain(tiny_model, np.zeros((1, 128, 128, 3), np.uint8), steps=8, method="gausslegendre", precision="bf16")
    assert bf16[0].attribution.shape == (128, 128, 3)


def test_unknown_ig_method_is_a_settings_error(tiny_model):
    from slmcnn.errors import SettingsError

    with pytest.raises(SettingsError, match="^method must be one of"):  # API terms; the CLI says --method
        explain(tiny_model, np.zeros((1, 128, 128, 3), np.uint8), method="simpson")


def test_layer_writer_raises_what_went_wrong_in_the_background(tmp_path, monkeypatch):
    from slmcnn import outputs

    written = []

    def write(outcome, files):
        if files == "bad":
            raise OSError("disk full")
        written.append(files)

    monkeypatch.setattr(outputs, "write_layer", write)
    writer = outputs.LayerWriter(max_pending=2)
    with pytest.raises(OSError, match="disk full"):
        try:
            for stem in ("a", "b", "bad", "c"):
                writer.submit(None, stem)
        finally:
            writer.close()
    assert written[:2] == ["a", "b"]


def test_index_html_shows_the_anomaly_heat_map_only_when_scored_and_escapes_names(tiny_model, tmp_path):
    from slmcnn.outputs import RunFiles
    from slmcnn.pipeline import RunOptions, run_layers

    backend = TorchBackend(tiny_model)
    odd = ("<img src=x onerror=alert(1)>", np.full((256, 384), 90, np.uint8))
    scored = RunOptions(anomaly=lambda result: np.linspace(0, 2, result.grid.count))
    for out, options in ((tmp_path / "scored", scored), (tmp_path / "plain", RunOptions())):
        with RunFiles(out, (), summary=False, html_title="<b>{layers}</b> layer") as files:
            list(run_layers(odd, backend, options, files=files))
    page = (tmp_path / "scored" / "index.html").read_text()
    assert 'alt="anomaly heat map &lt;img src=x onerror=alert(1)&gt;"' in page and "<img src=x" not in page
    assert 'class="anomaly-legend"' in page and "above 1</b>: unlike them" in page
    assert "highest 2.00 &middot; 3 of 6 tiles above 1" in page and "<title>&lt;b&gt;1&lt;/b&gt; layer" in page
    plain = (tmp_path / "plain" / "index.html").read_text()
    assert "anomaly" not in plain and "&lt;img src=x onerror=alert(1)&gt;" in plain


class ByBrightness:
    """A backend that calls bright tiles Error (sure), mid-grey ones Object (unsure), dark ones Powder."""

    name = "by-brightness"

    def probabilities(self, patches):
        level = patches.reshape(len(patches), -1).astype(np.float32).mean(1)
        table = {0: (0.97, 0.02, 0.01), 1: (0.4, 0.55, 0.05), 2: (0.02, 0.03, 0.95)}
        return np.array([table[int(v > 120) + int(v > 180)] for v in level], np.float32)


def test_index_html_has_a_summary_by_grade_the_worst_layers_first_and_pages(tmp_path):
    from slmcnn.outputs import RunFiles
    from slmcnn.pipeline import RunOptions, run_layers
    from slmcnn.render import PAGE_LAYERS

    layers = []
    for i in range(PAGE_LAYERS + 5):
        image = np.full((256, 384), 90, np.uint8)
        if i == 3:
            image[:, :256] = 220  # four Error tiles: critical
        if i == 7:
            image[:128, :128] = 220  # one Error tile: minor
        if i == 8:
            image[128:, 256:] = 150  # an unsure Object tile
        layers.append((f"layer{i:02d}", image))
    with RunFiles(tmp_path, (), summary=False, html_title="{layers} layers") as files:
        list(run_layers(layers, ByBrightness(), RunOptions(), files=files))
    page = (tmp_path / "index.html").read_text()
    summary = page[page.index('id="summary"') : page.index('id="page-1"')]
    assert '<span class="grade g-critical">critical</span></td><td>1<' in summary
    assert '<span class="grade g-minor">minor</span></td><td>1<' in summary
    assert f'<span class="grade g-ok">ok</span></td><td>{PAGE_LAYERS + 3}<' in summary
    worst = summary[summary.index('id="worst"') :]
    assert worst.index("layer03") < worst.index("layer07") and "layer08" not in worst
    assert 'href="#layer-3"' in worst and page.count('class="page"') == 2 and 'href="#page-2"' in page
    card = page[page.index('id="layer-8"') :][:2000]
    assert "Object 1 (mean p 0.55" in card and "1 unsure" in card
