"""Draw docs/architecture.png: the floors of slmcnn (slmcnn.floors) with their modules, read from
the source, and how many imports go from each floor to each lower one.

    .venv/bin/python scripts/architecture_picture.py [--out docs/architecture.png]
"""

import argparse
from collections import Counter

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from slmcnn import floors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/architecture.png")
    args = parser.parse_args()
    graph = floors.imports()
    by_floor: dict[int, list[str]] = {}
    for name in graph:
        by_floor.setdefault(floors.floor_of(name), []).append(name or "slmcnn (__init__)")
    edges = Counter((floors.floor_of(a), floors.floor_of(b)) for a, targets in graph.items() for b in targets)
    figure, axes = plt.subplots(figsize=(13, 8.5))
    height = 1.0
    for level, (title, _) in enumerate(floors.FLOORS):
        y = level * 1.35
        axes.add_patch(plt.Rectangle((0, y), 10, height, facecolor=f"C{level}", alpha=0.13, edgecolor=f"C{level}"))
        axes.text(-0.1, y + height / 2, f"{level}  {title}", ha="right", va="center", fontsize=11, weight="bold")
        names = sorted(by_floor.get(level, []))
        rows = [names[i : i + 7] for i in range(0, len(names), 7)]
        for r, row in enumerate(rows):
            axes.text(
                5,
                y + height - 0.25 - r * 0.3,
                "   ".join(row),
                ha="center",
                va="center",
                fontsize=8.5,
                family="monospace",
            )
        down = sum(count for (a, b), count in edges.items() if a == level and b < level)
        same = edges.get((level, level), 0)
        axes.text(10.1, y + height / 2, f"{down} imports down, {same} within", va="center", fontsize=8.5, color="0.3")
    axes.annotate(
        "", xy=(-2.9, 0.2), xytext=(-2.9, len(floors.FLOORS) * 1.35 - 0.5), arrowprops=dict(arrowstyle="->", lw=1.5)
    )
    axes.text(
        -3.05, len(floors.FLOORS) * 1.35 / 2, "imports go down only; no circles", rotation=90, ha="right", va="center"
    )
    axes.set_xlim(-3.6, 12.4)
    axes.set_ylim(-0.3, len(floors.FLOORS) * 1.35)
    axes.axis("off")
    axes.set_title(
        "slmcnn: floors and modules (read from the source by slmcnn.floors; held by tests/test_architecture.py)"
    )
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
