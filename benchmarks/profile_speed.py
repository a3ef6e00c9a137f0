"""Time `build_profile` on 50 good 1024x1024 full frames (synthetic), on the threads torch is given.

nice .venv/bin/python benchmarks/profile_speed.py [--frames 50] [--threads 2]
"""

import argparse
import os
import time

import torch

from slmcnn.checkpoint import default_model_path, load_model
from slmcnn.profile import build_profile
from slmcnn.synth.build import SynthSettings, plan_build, render_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_model(default_model_path())
    plan = plan_build(SynthSettings(size=1024, seed=21, layers=args.frames, defect_rates={}))
    frames = [render_layer(plan, i).image for i in range(args.frames)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    profile = build_profile(frames, None, model, progress=True)
    seconds = time.perf_counter() - started
    print(
        f"{args.frames} frames of 1024x1024 ({profile.positions} tiles each) profiled in {seconds:.1f} s on "
        f"{torch.get_num_threads()} threads (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    print(profile.summary())


if __name__ == "__main__":
    main()
