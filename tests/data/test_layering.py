"""galaxai.data knows no network: no module under galaxai/data imports galaxai.models."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import galaxai.data


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_data_does_not_import_models():
    root = Path(galaxai.data.__file__).parent
    offenders = {path.name: sorted(n for n in _imports(path) if n.startswith("galaxai.models"))
                 for path in sorted(root.rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}


def test_votes_and_schema_load_without_torch():
    code = ("import sys, galaxai.data.votes, galaxai.data.gz_schema; "
            "print('torch' in sys.modules, 'galaxai.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_schema_is_re_exported_unchanged():
    from galaxai.data import GZ_COLUMNS, gz_column_index
    from galaxai.models import morphology

    assert morphology.GZ_COLUMNS is GZ_COLUMNS and morphology.gz_column_index is gz_column_index
    assert len(GZ_COLUMNS) == 37 and gz_column_index("Class3.1") == 5
