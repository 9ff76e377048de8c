"""Packaging (README "Layout"): every source folder is a listed package, imported under the probes namespace."""

from pathlib import Path

import probes.analysis
import probes.cli
import probes.synthetic
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"probes": "probes", "probes.synthetic": "synthetic", "probes.analysis": "analysis", "probes.cli": "cli"}


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed


def test_top_level_folders_import_under_probes_namespace():
    assert Path(probes.synthetic.__file__).parent == ROOT / "synthetic"
    assert Path(probes.analysis.__file__).parent == ROOT / "analysis"
    assert Path(probes.cli.__file__).parent == ROOT / "cli"
