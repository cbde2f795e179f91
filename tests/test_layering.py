"""Imports run one way: common -> datasets -> modules -> pipelines -> nas -> experiments.

A package may import its own modules and those of the packages before it, never a later one, so
pipelines (the training recipe) works without the search, and the search without the experiments.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["common", "datasets", "modules", "pipelines", "nas", "experiments"]
NAMESPACE = "torchrec_automtl"  # every folder installs as torchrec_automtl.<folder>


def _layer(module: str) -> str:
    """The project folder of ``torchrec_automtl.<folder>...``, else the top-level name."""
    parts = module.split(".")
    return parts[1] if parts[0] == NAMESPACE and len(parts) > 1 else parts[0]


def imported_packages(path: Path) -> set[str]:
    """Project folders (and other top-level names) of every package ``path`` imports (at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(_layer(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_layer(node.module))
    return names


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_no_later_layer(package):
    later = set(LAYERS[LAYERS.index(package) + 1:])
    offending = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & later)
        for path in sorted((REPO / package).rglob("*.py"))
        if imported_packages(path) & later
    }
    assert offending == {}


def test_the_checker_sees_a_late_import(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("def f():\n    from torchrec_automtl.nas.derived import AutoMTLConfig\n    import torchrec_automtl.experiments.compare\n"
                      "import torch.nn\n")
    assert imported_packages(source) == {"nas", "experiments", "torch"}
