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


def test_monitors_example_tells_its_story(tmp_path):
    """examples/monitors.py (the README's "Monitors that act"): drift retrains, the challenger loses, a bad
    hand deploy is rolled back, an alert is raised, a shadow's agreement is logged, the plot is saved."""
    import json

    import mldb

    database, png = tmp_path / "monitors.db", tmp_path / "history.png"
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "monitors.py"), str(database), "--plot", str(png)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    con = mldb.connect(str(database))
    runs = con.execute("SELECT monitor, triggered, action, outcome, model_version_before, model_version_after, values "
                       "FROM mldb.monitor_runs ORDER BY started_at, monitor").fetchall()
    assert len(runs) == 13 and all(run[3] == "ok" for run in runs)
    triggered = [run[:6] for run in runs if run[1]]
    assert triggered == [("churn_drift", True, "train", "ok", 1, 1),  # day 3: retrained, the challenger lost
                         ("churn_predictions", True, "alert", "ok", 1, 1),
                         ("churn_quality", True, "rollback", "ok", 2, 1),  # day 4: the hand deploy rolled back
                         ("churn_predictions", True, "alert", "ok", 1, 1)]  # day 5: still drifted for version 1
    drift = [json.loads(run[6]) for run in runs if run[0] == "churn_drift"]
    assert [values["drifted_features"] for values in drift] == [0, 0, 1]  # paused after day 3
    (version, champion, value, champion_value, deployed), = con.execute(
        "SELECT version, champion_version, value, champion_value, deployed FROM mldb.deploy_decisions").fetchall()
    assert (version, champion, deployed) == (2, 1, False) and value < 0.5 < 0.9 < champion_value
    assert con.execute("SELECT version, previous_version, reason FROM mldb.deployments ORDER BY deployed_at, rowid"
                       ).fetchall() == [(1, None, "train"), (2, 1, "deploy"), (1, 2, "rollback")]
    assert con.execute("SELECT deployed_version, shadow_version FROM mldb.models").fetchall() == [(1, None)]
    (agreement,), = con.execute("SELECT agreement FROM mldb.prediction_log WHERE shadow_of = 1").fetchall()
    assert agreement < 0.5  # the shadow (version 2) disagreed with the champion on most rows
    assert con.execute("SELECT id, acknowledged FROM mldb.alerts ORDER BY id").fetchall() == [(1, True), (2, False)]
    con.close()
    assert "version 1 stays deployed" in result.stdout


def test_readme_monitors_sql_runs(tmp_path):
    """The SQL of the README's "Monitors that act", statement by statement, over the example's tables (a day of
    older customers arrived after the model was trained)."""
    import importlib.util

    import mldb
    from mldb.frontend import split_statements

    spec = importlib.util.spec_from_file_location("monitors_example", ROOT / "examples" / "monitors.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- section: monitors -->")[1].split("<!-- /section: monitors -->")[0]
    con = mldb.connect(str(tmp_path / "readme.db"))
    for table, batch in (("customers", example.customers(0)), ("audited", example.customers(0, rows=300, seed=1))):
        con.register("batch", batch)
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM batch")
        con.unregister("batch")
    con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT age, plan, spend, churned FROM customers) "
                "USING logistic WITH (epochs = 5, seed = 1)")
    example.arrive(con, "customers", example.customers(1, shift=15))
    returned = []
    for statement in split_statements(section.split("```sql")[1].split("```")[0]):
        cursor = con.execute(statement.text)
        text = " ".join(line for line in statement.text.splitlines() if not line.lstrip().startswith("--"))
        returned.append((text.split(" (")[0].strip(), cursor.fetchall() if cursor.description else None))
    said = dict(returned)
    assert len(returned) == 14
    (run,) = said["RUN MONITOR churn_predictions"]
    assert run[1] == "churn_predictions" and run[6:9] == (True, "alert", "ok")  # the older customers moved it
    assert [row[0] for row in said["SHOW MONITORS"]] == ["churn_drift", "churn_predictions", "churn_quality"]
    assert con.execute("SELECT name, paused FROM mldb.monitors ORDER BY name").fetchall() == [
        ("churn_drift", True), ("churn_quality", False)]
    assert con.execute("SELECT acknowledged FROM mldb.alerts").fetchall() == [(True,)]
    assert con.execute("SELECT version, champion_version, metric FROM mldb.deploy_decisions").fetchall() == [
        (2, 1, "f1")]
    (shadowed,) = con.execute("SELECT version, shadow_of, rows FROM mldb.prediction_log WHERE shadow_of IS NOT NULL"
                              ).fetchall()
    assert shadowed[0] == 3 and shadowed[1] in (1, 2) and shadowed[2] == 800  # (2 if the f1 policy deployed it)
    assert con.execute("SELECT deployed_version, shadow_version FROM mldb.models").fetchall() == [(3, None)]
    con.close()
