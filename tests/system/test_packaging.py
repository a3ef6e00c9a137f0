"""What people outside the project install: the licence pyproject names, a torch range, every
library the code imports declared, and the optional parts (extras) needed only when used."""

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS_ONLY = (
    "fastapi",
    "pydantic",
    "starlette",
    "uvicorn",
    "ray",
    "pyarrow",
    "psycopg",
)  # imported only where their extra is needed


def name_of(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def third_party_imports() -> set[str]:
    found = set()
    for path in (ROOT / "src" / "slmcnn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "slmcnn"}


def test_the_licence_file_is_the_one_pyproject_names():
    assert PROJECT["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_torch_is_a_range_not_one_version():
    (torch,) = [r for r in PROJECT["dependencies"] if name_of(r) == "torch"]
    assert ">=" in torch and "<" in torch and "==" not in torch
    assert re.search(r"<\s*(\d+)", torch).group(1) != re.search(r">=\s*(\d+\.\d+)", torch).group(1)


def test_every_imported_library_is_declared_and_extras_hold_the_optional_ones():
    declared = {name_of(r) for r in PROJECT["dependencies"]}
    extras = {name_of(r) for extra in ("app", "postgres", "ray") for r in PROJECT["optional-dependencies"][extra]}
    distributions = importlib.metadata.packages_distributions()
    for module in third_party_imports():
        names = {d.lower() for d in distributions.get(module, [module])}
        where = "extras" if module in EXTRAS_ONLY else "dependencies"
        assert names & (extras if module in EXTRAS_ONLY else declared), f"{module} is not in pyproject's {where}"


def test_without_the_extras_the_commands_start_and_the_app_names_its_extra():
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in EXTRAS_ONLY)
    script = f"import sys; {blocked}; from slmcnn import cli; sys.exit(cli.main(sys.argv[1:]))"
    run = lambda *args: subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    assert run("monitor", "--help").returncode == 0
    app = run("app", "--db", "none.sqlite")
    assert app.returncode == 2 and "pip install 'slmcnn[app]'" in app.stderr and "Traceback" not in app.stderr
