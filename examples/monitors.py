"""Monitors that act, over simulated days: a churn model, drift with bad labels, a retrain that loses,
a bad deploy rolled back by a monitor, an alert and a shadow (SPEC section 11, README "Monitors that act").

    .venv/bin/python examples/monitors.py [DB_PATH] [--plot monitor_history.png]

The days pass through the monitors' one clock: ``runner.run_due(session, now=...)`` runs what is due at
that simulated time, as ``mldb monitor DB --once --now ...`` (cron) and ``mldb serve`` do at the real
time. Nothing sleeps, and the data and models are seeded: every run tells the same story.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

import mldb
from mldb.cli import format_result
from mldb.monitors import runner

DAY = timedelta(days=1)
ROWS = 400
COLUMNS = "age, plan, spend, churned"
LATEST = f"SELECT {COLUMNS} FROM customers WHERE day = (SELECT max(day) FROM customers)"
HOLDOUT = f"SELECT {COLUMNS} FROM audited"  # labels a person checked: trusted
RUNS = """
SELECT round(epoch(started_at - (SELECT min(created_at) FROM mldb.monitors)) / 86400)::INTEGER AS day, monitor,
       json_extract(values, '$.drifted_features') AS drifted_features,
       round(json_extract(values, '$.prediction_psi')::DOUBLE, 3) AS prediction_psi,
       round(json_extract(values, '$.accuracy')::DOUBLE, 3) AS accuracy,
       triggered, action, outcome, model_version_before AS before, model_version_after AS after
FROM mldb.monitor_runs ORDER BY day, monitor"""


def customers(day: int, shift: float = 0.0, flipped: float = 0.0, rows: int = ROWS, seed: int = 0) -> pa.Table:
    """One day's customers: older ones churn. ``shift`` moves ages (drift); ``flipped`` is the share of
    labels an upstream bug inverted."""
    rng = np.random.default_rng(seed * 1000 + day)
    age = rng.normal(40 + shift, 10, rows).round(1)
    churned = (age > 45) ^ (rng.random(rows) < 0.05)
    churned ^= rng.random(rows) < flipped
    return pa.table({"day": np.full(rows, day, dtype=np.int32), "age": age,
                     "plan": rng.choice(["basic", "plus", "pro"], rows, p=(0.5, 0.3, 0.2)),
                     "spend": rng.gamma(2.0, 20.0, rows).round(2), "churned": churned})


def arrive(con, table: str, batch: pa.Table) -> None:
    con.register("batch", batch)
    con.execute(f"INSERT INTO {table} SELECT * FROM batch")
    con.unregister("batch")


def show(con, title: str, sql: str) -> None:
    print(f"\n-- {title}\n{sql.strip()}")
    print(format_result(con.execute(sql)))


def say(text: str) -> None:
    print(f"\n== {text}")


def setup(con) -> None:
    """Day 0: last month's customers, a hand-checked holdout, model churn version 1 and three monitors."""
    con.register("day0", customers(0))
    con.execute("CREATE TABLE customers AS SELECT * FROM day0")
    con.unregister("day0")
    con.register("audit0", customers(0, rows=300, seed=1))
    con.execute("CREATE TABLE audited AS SELECT * FROM audit0")
    con.unregister("audit0")
    show(con, "day 0: the champion", f"CREATE MODEL churn PREDICT churned FROM (SELECT {COLUMNS} FROM customers) "
         "USING logistic WITH (epochs = 20, seed = 1)")
    show(con, "retrain on drift; deploy the challenger only if it beats the champion on the trusted holdout",
         f"CREATE MONITOR churn_drift ON MODEL churn CHECK DRIFT ({LATEST}) EVERY INTERVAL 1 DAY "
         f"WHEN drifted_features >= 1 THEN TRAIN FROM ({LATEST}) DEPLOY IF BETTER ON ({HOLDOUT})")
    show(con, "roll back whatever serves badly on the trusted holdout",
         f"CREATE MONITOR churn_quality ON MODEL churn CHECK EVALUATE ({HOLDOUT}) EVERY INTERVAL 1 DAY "
         "WHEN accuracy < 0.8 THEN ROLLBACK")
    show(con, "tell a person when the predictions themselves move",
         f"CREATE MONITOR churn_predictions ON MODEL churn CHECK DRIFT ({LATEST}) EVERY INTERVAL 1 DAY "
         "WHEN prediction_psi > 0.2 THEN ALERT")


def day(con, start, number: int) -> None:
    """Run what is due at the start of day ``number``, as a cron'd ``mldb monitor --once`` would."""
    for run in runner.run_due(con.session, now=start + number * DAY):
        print(f"   {run['monitor']}: triggered={run['triggered']} action={run['action']} outcome={run['outcome']} "
              f"version {run['model_version_before']} -> {run['model_version_after']}")
        if run["triggered"]:
            print(f"      {run['message']}")


def story(con) -> None:
    setup(con)
    start = con.execute("SELECT max(created_at) FROM mldb.monitors").fetchall()[0][0]
    for number in (1, 2):
        arrive(con, "customers", customers(number))
        say(f"day {number}: a quiet day's customers")
        day(con, start, number)
    say("day 3: older customers arrive (drift), and an upstream bug inverted 70% of the new labels")
    arrive(con, "customers", customers(3, shift=15, flipped=0.7))
    arrive(con, "audited", customers(3, shift=15, rows=300, seed=1))  # the audit's labels are right
    day(con, start, 3)
    show(con, "the challenger lost: version 1 keeps serving",
         "SELECT model, version, champion_version, metric, round(value, 3) AS value, "
         "round(champion_value, 3) AS champion_value, holdout_rows, deployed FROM mldb.deploy_decisions")
    show(con, "the alert, for a person to read", "SELECT id, monitor, message, acknowledged FROM mldb.alerts")
    show(con, "acknowledged", "ACKNOWLEDGE ALERT 1")
    show(con, "an engineer investigates: the drift monitor waits", "ALTER MONITOR churn_drift PAUSE")

    say("day 4: version 2 scores next to version 1 as a shadow, then is deployed by hand anyway")
    arrive(con, "customers", customers(4, shift=15))
    show(con, "a shadow", "DEPLOY MODEL churn VERSION 2 AS SHADOW")
    con.execute(f"SELECT count(*) FROM ({LATEST}) WHERE PREDICT(churn)").fetchall()
    show(con, "how often the shadow agreed with what served",
         "SELECT model, version, shadow_of, rows, round(agreement, 3) AS agreement FROM mldb.prediction_log "
         "WHERE shadow_of IS NOT NULL")
    show(con, "the bad version, by hand (clears the shadow)", "DEPLOY MODEL churn VERSION 2")
    day(con, start, 4)
    say("day 5")
    arrive(con, "customers", customers(5, shift=15))
    day(con, start, 5)

    show(con, "every run of every monitor (day: since the monitors were created)", RUNS)
    show(con, "what served, when and why",
         "SELECT model, version, previous_version, reason FROM mldb.deployments ORDER BY deployed_at, rowid")
    show(con, "serving now", "SELECT name, deployed_version FROM mldb.models")


def save_plot(con, path: str) -> None:
    """Both monitors' histories (mldb.plot.monitor_history), one above the other, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mldb import plot

    figure, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    plot.monitor_history(con, "churn_drift", ax=axes[0])
    plot.monitor_history(con, "churn_quality", ax=axes[1])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"\nplot: {path}")


def main(path: str, plot_path: str | None) -> None:
    con = mldb.connect(path)
    print(f"mldb monitors example on {path}")
    story(con)
    if plot_path:
        save_plot(con, plot_path)
    con.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", nargs="?", help="database file (default: a temporary one)")
    parser.add_argument("--plot", metavar="PATH", help="save the monitors' history (PNG)")
    arguments = parser.parse_args()
    if arguments.database:
        main(arguments.database, arguments.plot)
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(str(Path(folder) / "monitors.db"), arguments.plot)
