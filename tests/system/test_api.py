"""The public Python API (slmcnn.__all__) and what importing slmcnn does not do."""

import subprocess
import sys


def test_importing_slmcnn_changes_nothing_global():
    code = (
        "import matplotlib, torch._inductor.config as inductor; before = matplotlib.get_backend(); "
        "import slmcnn, slmcnn.cli, slmcnn.pipeline, slmcnn.render, slmcnn.monitoring, slmcnn.backends; "
        "assert matplotlib.get_backend() == before and not inductor.freezing; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr
