"""Layer rules (docs/CONTRACTS.md): data flows synthetic → engine → run directory → analysis → figures, and the
CLI sits on top. Every import is checked, lazy ones inside functions too, by reading the source (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> import name (pyproject's package-dir mapping)
PACKAGES = {"probes": "probes", "synthetic": "probes.synthetic", "analysis": "probes.analysis", "cli": "probes.cli"}

# (importing package prefix, forbidden import prefixes, files allowed to break the rule and why)
RULES: list[tuple[str, tuple[str, ...], dict[str, str]]] = [
    ("probes", ("probes.cli", "probes.analysis"), {
        "probes.__main__": "the `python -m probes` entry point runs the CLI",
        "probes": "the notebook façade re-exports load_run from analysis, lazily",
    }),
    ("probes.analysis", ("probes.train", "probes.models", "probes.ssm", "probes.launch", "probes.bench",
                         "probes.demo", "probes.studies", "probes.vlm.train", "probes.vlm.model",
                         "probes.cli"), {}),
    ("probes.synthetic", ("probes.train", "probes.models", "probes.ssm", "probes.launch", "probes.bench",
                          "probes.vlm", "probes.analysis", "probes.cli"), {}),
]
LIBRARY_TOP = ("probes.synthetic", "probes.analysis", "probes.cli")  # mapped folders are not "probes/" code


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    base = PACKAGES[parts[0]]
    rest = parts[1:]
    if rest and rest[-1] == "__init__":
        rest = rest[:-1]
    return ".".join([base, *rest])


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from probes import cli`
    return found


def source_files() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py"))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations() -> list[str]:
    out = []
    for path in source_files():
        mod = module_name(path)
        for owner, forbidden, allowed in RULES:
            if not _under(mod, owner) or mod in allowed:
                continue
            if owner == "probes" and any(_under(mod, top) for top in LIBRARY_TOP):
                continue
            seen: set[str] = set()
            for name in sorted(imports_of(path)):
                bad = next((f for f in forbidden if _under(name, f)), None)
                if bad and bad not in seen:
                    seen.add(bad)
                    out.append(f"{path.relative_to(ROOT)} imports {name} (layer {owner} must not use {bad})")
    return out


def test_layers_hold() -> None:
    assert violations() == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The rule checker itself: a lazy import inside a function and a relative import are both found."""
    src = ROOT / "probes" / "launch" / "dispatch.py"
    names = imports_of(src)
    assert "probes.launch.jobs" in names  # `from .jobs import RunResult`
    demo_cli = imports_of(ROOT / "cli" / "demo.py")
    assert "probes.analysis.curves" in demo_cli  # imported inside the command function


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_every_source_file_parses(folder: str) -> None:
    for path in (ROOT / folder).rglob("*.py"):
        module_name(path)
        imports_of(path)
