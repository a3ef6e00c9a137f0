"""`python -m slmcnn.backends [MODEL]`: time the engines `auto` chooses from on this CPU, once
(backends/choice.py), after a job has ended (`--after PID`: what a first job too short to gain the
timing back starts, in a process of its own), or ahead of one.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from slmcnn import aot
from slmcnn.backends import timed_candidates
from slmcnn.backends.choice import choose, read_record
from slmcnn.errors import SlmcnnError

WAIT_EVERY = 0.5  # s between looks at the job a timing process waits for


def main(argv: list[str] | None = None) -> int:
    """Time the engines `auto` chooses from for a model on this CPU, once, and keep the record."""
    from slmcnn.checkpoint import open_model

    parser = argparse.ArgumentParser(prog="python -m slmcnn.backends", description=main.__doc__)
    parser.add_argument("model", nargs="?", help="model file (default: the shipped model)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--after", type=int, metavar="PID", help="first wait for this process to end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    while args.after and _alive(args.after):
        time.sleep(WAIT_EVERY)
    try:
        model = open_model(args.model)
    except SlmcnnError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    path = aot.choice_path(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_record(model) is not None or not aot.lock(path):
        return 0  # timed already, or being timed by another process
    try:
        choose(model, *timed_candidates(model, args.precision))
    finally:
        path.with_suffix(".lock").unlink(missing_ok=True)
    return 0


def _alive(pid: int) -> bool:
    """The process runs (an ended one its parent has not reaped yet, a zombie, has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc here
        return True


if __name__ == "__main__":
    sys.exit(main())
