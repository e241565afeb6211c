"""Docs that run: the demo and every ```python block of the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end(tmp_path):
    database = tmp_path / "demo.db"
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), str(database)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "north" in out and "1117" in out  # plain SQL
    assert re.search(r"\| churn\s+\| 2\s+\| binary\s+\| lightgbm\s+\|", out)  # trained, retrained, registered
    importance = out.split("which features matter")[1].split("\n-- ")[0]
    shares = [float(share) for share in re.findall(r"\| ([\d.]+)\s+\| gain", importance)]
    assert len(shares) == 4 and abs(sum(shares) - 1) < 1e-9
    explained = out.split("why each row got its prediction")[1].split("\n-- ")[0]
    assert len(re.findall(r"\{\w+=[-\d.e]+, \w+=[-\d.e]+\}", explained)) == 3  # top_k => 2: two features a row
    search = out.split("semantic search through the index")[1].split("\n-- ")[0]
    top = [line for line in search.splitlines() if line.startswith("| ") and "topic" not in line]
    assert top and all("travel" in line for line in top)  # cheap plane tickets -> travel articles
    drift = out.split("drift of new data")[1]
    assert re.search(r"\| age\s+\| psi\s+\| [\d.]+\s+\| true", drift)  # the shifted feature is flagged
    assert re.search(r"\| plan\s+\| psi\s+\| [\d.]+\s+\| false", drift)
    assert database.exists()


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
