"""The `slmcnn` console script and `python -m slmcnn`: the command line, then out."""

import os
import sys

from slmcnn.cli import main


def run() -> None:
    """After an interrupt the process leaves at once: native thread pools (ONNX Runtime, OpenMP)
    torn down at exit while a thread still works abort it (SIGABRT instead of 130, a systemd unit
    marked failed); what had to be stored is stored by then."""
    code = main()
    if code == 130:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
