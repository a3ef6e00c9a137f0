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

WIDTH = 110  # characters in a line of a floor's box


def lines_of(names: list[str]) -> list[str]:
    """A floor's modules as lines: plain modules together, then each package's modules on a line
    of their own ('app.routes: builds camera ...'); modules deeper than a package in a package
    count as that package's ('monitoring.migrations: env versions')."""
    packages: dict[str, set[str]] = {}
    plain = []
    for name in names:
        parts = name.split(".")
        if len(parts) == 1:
            plain.append(name)
        else:
            packages.setdefault(".".join(parts[:-1][:2]), set()).add(parts[min(len(parts) - 1, 2)])
    lines: list[str] = []
    for name in sorted(n for n in plain if n not in packages):
        if lines and len(lines[-1]) + len(name) + 3 <= WIDTH:
            lines[-1] += "   " + name
        else:
            lines.append(name)
    return lines + [f"{package}: {' '.join(sorted(members))}" for package, members in sorted(packages.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/architecture.png")
    args = parser.parse_args()
    graph = floors.imports()
    by_floor: dict[int, list[str]] = {}
    for name in graph:
        by_floor.setdefault(floors.floor_of(name), []).append(name or "slmcnn (__init__)")
    edges = Counter((floors.floor_of(a), floors.floor_of(b)) for a, targets in graph.items() for b in targets)
    shown = [lines_of(by_floor.get(level, [])) for level in range(len(floors.FLOORS))]
    heights = [0.3 * len(lines) + 0.3 for lines in shown]
    bottoms = [sum(heights[:level]) + 0.35 * level for level in range(len(floors.FLOORS))]
    top = bottoms[-1] + heights[-1]
    figure, axes = plt.subplots(figsize=(14, 2 + 0.55 * top))
    for level, (title, _) in enumerate(floors.FLOORS):
        y, height = bottoms[level], heights[level]
        axes.add_patch(plt.Rectangle((0, y), 10, height, facecolor=f"C{level}", alpha=0.13, edgecolor=f"C{level}"))
        axes.text(-0.1, y + height / 2, f"{level}  {title}", ha="right", va="center", fontsize=11, weight="bold")
        for r, line in enumerate(shown[level]):
            axes.text(5, y + height - 0.3 - r * 0.3, line, ha="center", va="center", fontsize=8, family="monospace")
        down = sum(count for (a, b), count in edges.items() if a == level and b < level)
        same = edges.get((level, level), 0)
        axes.text(10.1, y + height / 2, f"{down} imports down, {same} within", va="center", fontsize=8.5, color="0.3")
    axes.annotate("", xy=(-2.9, 0.1), xytext=(-2.9, top - 0.1), arrowprops=dict(arrowstyle="->", lw=1.5))
    axes.text(-3.05, top / 2, "imports go down only; no circles", rotation=90, ha="right", va="center")
    axes.set_xlim(-3.6, 12.4)
    axes.set_ylim(-0.2, top + 0.1)
    axes.axis("off")
    axes.set_title(
        "slmcnn: floors and modules (read from the source by slmcnn.floors; held by tests/integration/test_architecture.py)"
    )
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
