"""Whether a layer file can be read without killing the process that reads it, tried in a child
process: the monitor asks before it calls a layer poison. A monitor killed from outside (SIGKILL,
a reboot) while classifying a healthy layer leaves the same trace as a layer that killed it; only
a layer that also kills the child is poison.

    python -m slmcnn.monitoring.probe LAYER [MAX_MEGAPIXELS]
"""

import subprocess
import sys
from pathlib import Path

PROBE_SECONDS = 120.0


def layer_survives(path: Path, max_megapixels: float | None = None) -> bool:
    """True when a child process reads and tiles the layer and exits normally."""
    command = [sys.executable, "-m", "slmcnn.monitoring.probe", str(path)]
    if max_megapixels is not None:
        command.append(str(max_megapixels))
    try:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def main(argv: list[str]) -> int:
    from contextlib import suppress

    from slmcnn import images
    from slmcnn.errors import SlmcnnError
    from slmcnn.tiles import tile

    if len(argv) > 1:
        images.set_limits(float(argv[1]))
    with suppress(SlmcnnError):  # unreadable, but it did not kill the reader: tried and failed as such
        tile(images.to_uint8(images.read(argv[0])), 128)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
