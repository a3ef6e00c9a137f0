"""The floors of the package and who may import whom, read from the source (`ast`, imports inside
functions included): docs/ARCHITECTURE.md draws them, tests/integration/test_architecture.py holds them.

A module may import its own floor and the floors below; no import goes up, none goes round in a
circle, and nothing below the API imports `slmcnn` itself (its __init__ re-exports the API).
"""

import ast
from pathlib import Path

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("constants", "errors", "defect_types")),
    ("basics", (
        "validate", "files", "precision", "preprocess", "memory", "augment", "tiles", "model", "folding",
        "images", "pngstrips", "labels", "checkpoint", "camera", "metrics", "data", "render", "synth",
        "backends.base", "floors", "grading", "regions", "teaching",
    )),
    ("network and camera", (
        "profile", "adapt", "aot", "explain", "train", "distributed", "backends", "export", "finemaps", "texture",
        "change", "thresholds",
    )),
    ("layers", ("predict", "outputs", "pipeline")),
    ("services", ("monitoring", "app", "archive")),
    ("API and commands", ("api", "__init__", "__main__", "cli", "options", "console", "inference")),
]  # fmt: skip
"""Floors from the bottom up, each with its modules (a name covers a package and what is in it)."""

PACKAGE = Path(__file__).parent


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted names below `slmcnn` ('' is the package itself) and their files."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """For each module, the modules of slmcnn it imports, anywhere in its file."""
    names = module_names(root)

    def owner(dotted: str) -> str:
        while dotted and dotted not in names:
            dotted = dotted.rpartition(".")[0]
        return dotted

    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "slmcnn":
                inner = node.module.removeprefix("slmcnn").lstrip(".")
                found = [owner(f"{inner}.{a.name}".lstrip(".")) for a in node.names]
            elif isinstance(node, ast.Import):
                found = [
                    owner(a.name.removeprefix("slmcnn").lstrip("."))
                    for a in node.names
                    if a.name.split(".")[0] == "slmcnn"
                ]
            graph[name] |= {target for target in found if target != name}
    return graph


def floor_of(name: str) -> int:
    """The floor of a module: the most specific name in FLOORS that covers it."""
    best, level = -1, None
    for index, (_, members) in enumerate(FLOORS):
        for member in members:
            member = "" if member == "__init__" else member
            covers = name == member or (member and name.startswith(member + "."))
            if covers and len(member) > best:
                best, level = len(member), index
    if level is None:
        raise KeyError(f"slmcnn.{name} is on no floor: add it to floors.FLOORS")
    return level


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles (strongly connected groups of two or more modules), Tarjan's way."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports that go to a higher floor, or to the package itself from below the API."""
    api = len(FLOORS) - 1
    wrong = []
    for name, targets in graph.items():
        for target in targets:
            if floor_of(target) > floor_of(name) or (target == "" and floor_of(name) < api):
                wrong.append((name, target))
    return sorted(wrong)
