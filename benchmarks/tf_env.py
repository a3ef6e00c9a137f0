"""Create .venv-tf (tensorflow-cpu, OpenCV, NumPy) on first use; TensorFlow is never slmcnn's dependency."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-tf"
PACKAGES = ["tensorflow-cpu==2.21.0", "opencv-python-headless", "numpy"]


def tf_python() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").is_file():
        print(f"creating {VENV} with {' '.join(PACKAGES)} (first use only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
        (VENV / ".installed").touch()
    return python


if __name__ == "__main__":
    print(tf_python())
