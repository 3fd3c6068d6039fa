"""Dependencies point one way: orchestrator -> medn. Importing medn (and every module a training
uses) must load neither Ray nor MLflow nor the orchestrator; and the execution modules import
no module that imports them back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _medn_modules() -> list[str]:
    modules = []
    for path in sorted((REPO / "medn").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_importing_medn_loads_no_ray_mlflow_or_orchestrator() -> None:
    modules = _medn_modules()
    assert "medn.train" in modules and "medn.data.dataset" in modules
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ray', 'mlflow', 'orchestrator'))\n"
            "print(','.join(bad))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"medn imported: {result.stdout.strip()}"


def _imports(path: Path) -> set[str]:
    """Every orchestrator.execution module ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n.startswith("orchestrator.execution.")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("orchestrator.execution.")}
    return found


def test_execution_modules_import_each_other_in_one_direction() -> None:
    folder = REPO / "orchestrator" / "execution"
    graph = {f"orchestrator.execution.{p.stem}": _imports(p) for p in folder.glob("*.py")
             if p.stem != "__init__"}
    graph = {name: {d for d in deps if d in graph} for name, deps in graph.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph[start]:
            if dep == target or (dep not in seen and reaches(dep, target, seen | {dep})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert not cycles, f"import cycles through: {cycles}"
    assert "orchestrator.execution.runner" not in set().union(*graph.values())
