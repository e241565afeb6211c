"""mldb.plot from Python and through ``%mldb --plot``, on a really trained model."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

import mldb  # noqa: E402
from mldb import plot  # noqa: E402
from mldb.magic import MldbMagic  # noqa: E402


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    connection = mldb.connect(str(tmp_path_factory.mktemp("plot") / "plot.db"))
    connection.execute("CREATE TABLE c AS SELECT range % 60 AS age, range % 3 = 0 OR range % 60 < 10 AS y "
                       "FROM range(200)")
    connection.execute("CREATE MODEL m PREDICT y FROM c USING logistic WITH (epochs = 4, seed = 1)")
    connection.execute("TRAIN m WITH (epochs = 6)")
    yield connection
    connection.close()


def logged(con, version: int) -> list[tuple]:
    return con.execute("SELECT epoch, train_loss, valid_loss FROM mldb.training_log "
                       "WHERE model = 'm' AND version = ? ORDER BY epoch", [version]).fetchall()


def test_training_curves_draw_the_training_log(con):
    ax = plot.training_curves(con, "m")
    train, valid = ax.get_lines()[:2]
    log = logged(con, 2)  # the latest version
    assert list(train.get_xdata()) == [row[0] for row in log]
    assert list(train.get_ydata()) == pytest.approx([row[1] for row in log])
    assert list(valid.get_ydata()) == pytest.approx([row[2] for row in log])
    assert ax.get_title() == "m: loss per epoch"
    pinned = plot.training_curves(con.cursor(), "m@1")
    assert len(pinned.get_lines()[0].get_xdata()) == len(logged(con, 1))
    plt.close("all")


@pytest.mark.parametrize("model, message", [
    ("nope", "model 'nope' has no training log"),
    ("m@9", "version 9 of model 'm' has no training log"),
    ("m@x", "a version after '@' is a whole number"),
])
def test_training_curves_of_a_missing_model_is_a_clear_error(con, model, message):
    with pytest.raises(mldb.ProgrammingError, match=message):
        plot.training_curves(con, model)


def test_plot_magic_shows_the_figure_and_closes_it(con):
    shell = InteractiveShell.instance()
    shell.register_magics(MldbMagic(shell=shell))
    shell.user_ns["plot_con"] = con
    shell.run_cell("%mldb --connect plot_con SELECT 1")
    with capture_output() as captured:
        result = shell.run_cell("%mldb --plot training m")
    assert result.success and result.result is None
    assert [output.data["text/plain"] for output in captured.outputs] == ["<Figure size 640x360 with 1 Axes>"]
    assert plt.get_fignums() == []
    with capture_output() as captured:
        result = shell.run_cell("%mldb --plot histogram m")
    assert isinstance(result.error_in_exec, mldb.ProgrammingError) and "unknown plot 'histogram'" in captured.stdout
    with capture_output() as captured:
        result = shell.run_cell("%mldb --plot drift m")
    assert isinstance(result.error_in_exec, mldb.ProgrammingError) and "needs a query" in captured.stdout
    shell.user_ns.pop("plot_con")


def test_drift_and_volume_plots_come_from_the_lifecycle_feature(con):
    shell = InteractiveShell.instance()
    shell.register_magics(MldbMagic(shell=shell))
    shell.user_ns["plot_con"] = con
    shell.run_cell("%mldb --connect plot_con SELECT PREDICT(m) FROM c")
    with capture_output() as captured:
        drift = shell.run_cell("%%mldb --plot drift m\nSELECT * FROM c WHERE age > 40")
        volume = shell.run_cell("%mldb --plot volume m")
    assert drift.success and volume.success
    assert len(captured.outputs) == 2 and plt.get_fignums() == []
    assert plot.drift(con, "m", "SELECT * FROM c WHERE age > 40").get_title() == "m@2: drift (PSI)"
    assert plot.prediction_volume(con, "m").get_lines()
    shell.user_ns["lo"] = 40
    with capture_output() as captured:
        bound = shell.run_cell("%mldb --plot drift m SELECT * FROM c WHERE age > {lo}")
    assert isinstance(bound.error_in_exec, mldb.NotSupportedError) and "write the value" in captured.stdout
    shell.user_ns.pop("plot_con")
    plt.close("all")
