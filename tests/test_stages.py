"""The stages import each other in pipeline order only (model -> export -> quantize -> bundle -> runtime).

Imports inside functions count too. What every stage shares (errors, the domain set, the layout,
sha256) lives in the `edgemode` package itself.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
STAGES = ("model", "train", "export", "quantize", "bundle", "runtime", "devices", "explain")
FORBIDDEN = {
    "model": {"train", "export", "quantize", "bundle", "runtime", "devices", "explain"},
    "train": {"export", "quantize", "bundle", "runtime", "devices", "explain"},
    "export": {"train", "explain"},
    "bundle": {"model", "train", "export", "quantize", "runtime", "devices", "explain"},
    "runtime": {"model", "train", "export", "quantize", "explain"},
    "devices": {"model", "train", "export", "quantize", "runtime", "explain"},
}


def imported_stages(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        stages |= {m.split(".")[1] for m in modules if m.startswith("edgemode.") and m.split(".")[1] in STAGES}
    return stages


@pytest.mark.parametrize("stage", list(FORBIDDEN))
def test_a_stage_imports_no_later_stage(stage):
    crossing = {str(p.relative_to(ROOT)): imported_stages(p) & FORBIDDEN[stage] for p in (ROOT / stage).glob("*.py")}
    assert not {p: s for p, s in crossing.items() if s}
    assert crossing  # the folder was found and read
