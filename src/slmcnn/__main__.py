"""The `slmcnn` console script and `python -m slmcnn`: the command line, then out."""

import os
import sys

from slmcnn.cli import main


def one_blas_thread() -> None:
    """numpy's OpenBLAS on one thread for the process: slmcnn's large products run in PyTorch;
    numpy's are small and come once a layer (the texture's projection, the tiles' stitching), and
    after each OpenBLAS's idle threads spin for a while: 14% of a 216-layer job's CPU, for nothing
    (benchmarks/README.md)."""
    import numpy  # noqa: F401  (OpenBLAS is loaded with numpy)
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(internal_api="openblas").limit(limits=1)


def run() -> None:
    """After an interrupt the process leaves at once: native thread pools (ONNX Runtime, OpenMP)
    torn down at exit while a thread still works abort it (SIGABRT instead of 130, a systemd unit
    marked failed); what had to be stored is stored by then."""
    one_blas_thread()
    code = main()
    if code == 130:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
