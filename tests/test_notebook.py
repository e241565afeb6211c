"""The magic in a real Jupyter kernel (nbclient + ipykernel), and examples/quickstart.ipynb run end to end."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def kernel(notebook, folder: Path) -> NotebookClient:
    return NotebookClient(notebook, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(folder)}})


def without_pytest_marker() -> dict:
    """The environment minus PYTEST_CURRENT_TEST, under which DuckDB shows no progress bar."""
    return {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}


def outputs_of(cell, output_type: str) -> list:
    return [output for output in cell.outputs if output.output_type == output_type]


def test_error_fails_the_cell_briefly_and_the_kernel_lives(tmp_path):
    cells = ["%load_ext mldb", "%mldb CREATE TABLE t AS SELECT 1 AS a", "%mldb SELEC 1",
             "%mldb SELECT a + 1 AS b FROM t",
             "from mldb.progress import bar\nsum(bar(range(3), desc='work'))",
             "%%mldb\nSET progress_bar_time = 1;\nSELECT count(*) FROM range(200000000) WHERE hash(range) % 7 = 1"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = kernel(notebook, tmp_path)
    with client.setup_kernel(env=without_pytest_marker()):
        for index, cell in enumerate(notebook.cells[:2]):
            client.execute_cell(cell, index)
        with pytest.raises(CellExecutionError):  # "run all" stops here
            client.execute_cell(notebook.cells[2], 2)
        for index in (3, 4, 5):
            client.execute_cell(notebook.cells[index], index)
    [error] = outputs_of(notebook.cells[2], "error")
    assert error.ename == "ProgrammingError"
    assert error.traceback == ['ProgrammingError (SQLSTATE 42601): Parser Error: syntax error at or near "SELEC"',
                               "LINE 1: SELEC 1", "        ^^^^^"]
    [table] = outputs_of(notebook.cells[3], "execute_result")  # the kernel is alive and the data kept
    assert "<table" in table.data["text/html"] and "1 row" in table.data["text/html"]
    [widget] = outputs_of(notebook.cells[4], "display_data")  # tqdm's notebook bar
    assert "application/vnd.jupyter.widget-view+json" in widget.data
    progress = "".join(output.text for output in outputs_of(notebook.cells[5], "stream"))
    assert "% ▕" in progress  # DuckDB's bar for long SQL


def tagged(notebook, tag: str):
    [cell] = [cell for cell in notebook.cells if tag in cell.get("metadata", {}).get("tags", [])]
    return cell


def shown_text(cell) -> str:
    return "\n".join(output.data["text/plain"] for output in outputs_of(cell, "execute_result"))


def test_quickstart_notebook_runs_in_a_real_kernel(tmp_path):
    notebook = nbformat.read(QUICKSTART, as_version=4)
    kernel(notebook, tmp_path).execute()  # raises CellExecutionError if any cell fails
    assert all(not outputs_of(cell, "error") for cell in notebook.cells if cell.cell_type == "code")
    assert all(plan in shown_text(tagged(notebook, "data")) for plan in ("basic", "pro", "team"))
    assert "churn" in shown_text(tagged(notebook, "models"))
    [figure] = outputs_of(tagged(notebook, "plot"), "display_data")
    assert figure.data["image/png"]
    assert "predicted" in shown_text(tagged(notebook, "predict"))
    [printed] = outputs_of(tagged(notebook, "evaluate"), "stream")
    accuracy = float(printed.text.split("holdout accuracy: ")[1].split(",")[0])
    assert accuracy >= 0.8
    assert "384" in shown_text(tagged(notebook, "embed"))
    hits = shown_text(tagged(notebook, "search"))
    assert "Cheap flights" in hits and "Budget airlines" in hits and "recipe" not in hits and "stew" not in hits
    dishes = shown_text(tagged(notebook, "order_by"))
    assert "flights" not in dishes and "airlines" not in dishes and "tickets" not in dishes
    assert "age" in shown_text(tagged(notebook, "drift_table")) and "true" in shown_text(tagged(notebook, "drift_table"))
    [drift] = outputs_of(tagged(notebook, "drift"), "display_data")
    assert drift.data["image/png"]
