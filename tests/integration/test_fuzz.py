"""Property-based tests (hypothesis, issue #16): random bytes, truncated and oversized images, random
CSVs, settings files and model headers fed to the public entry points give a result or a
SlmcnnError, never another exception."""

import json
from dataclasses import fields

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmcnn import images
from slmcnn.errors import SlmcnnError
from slmcnn.synth import SynthSettings
from slmcnn.validate import settings_file
from tests.unit.test_fuzz import CELL, FAST, JSON, SUFFIXES, encoded, outcome


@FAST
@given(blob=st.binary(max_size=2000), suffix=SUFFIXES)
def test_random_bytes_as_an_image(tmp_path, blob, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(blob)
    result = outcome(images.read, path)
    assert isinstance(result, SlmcnnError) or (result.ndim == 3 and result.shape[2] == 3)


SYNTH_NAMES = sorted({f.name for f in fields(SynthSettings)} - {"label_rule", "defect_rates", "write_patches"})


@FAST
@given(values=st.dictionaries(st.sampled_from(SYNTH_NAMES), JSON, max_size=4) | JSON)
def test_random_synth_configs(tmp_path, values):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    checked = outcome(settings_file, path, SynthSettings, set(SYNTH_NAMES))
    if isinstance(checked, dict):
        outcome(lambda: SynthSettings(**checked).check())


@FAST
@given(blob=st.binary(max_size=3000), keep=st.floats(0.05, 1), suffix=SUFFIXES, side=st.integers(1, 300))
def test_the_python_api_on_damaged_layers(tmp_path, tiny_model, blob, keep, suffix, side):
    import slmcnn

    whole = encoded(np.random.default_rng(side).integers(0, 255, (side, side + 7, 3), dtype=np.uint8), suffix)
    paths = [tmp_path / f"random{suffix}", tmp_path / f"cut{suffix}"]
    paths[0].write_bytes(blob)
    paths[1].write_bytes(whole[: max(1, int(len(whole) * keep))])
    for path in paths:
        result = outcome(lambda p=path: slmcnn.predict_layers(p, tiny_model, backend="torch", workers=1))
        assert isinstance(result, SlmcnnError) or result[0].class_map.shape == (side, side + 7)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CELL, max_size=3), max_size=4), raw=st.one_of(st.none(), st.binary(max_size=100)))
def test_the_command_line_on_random_csvs(tmp_path, tiny_model_file, rows, raw):
    from tests.conftest import run_cli

    path = tmp_path / "labels.csv"
    path.write_bytes(raw if raw is not None else ("Image;Label\n" + "\n".join(";".join(r) for r in rows)).encode())
    result = run_cli("evaluate", tiny_model_file, path)
    assert result.returncode in (0, 2) and "Traceback" not in result.stderr
    assert result.returncode == 0 or len([line for line in result.stderr.splitlines() if line.strip()]) == 1
