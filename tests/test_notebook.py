"""The magic in a real Jupyter kernel (nbclient + ipykernel), and examples/quickstart.ipynb run end to end."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def kernel(notebook, folder: Path) -> NotebookClient:
    return NotebookClient(notebook, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(folder)}})


def outputs_of(cell, output_type: str) -> list:
    return [output for output in cell.outputs if output.output_type == output_type]


def test_error_fails_the_cell_briefly_and_the_kernel_lives(tmp_path):
    cells = ["%load_ext mldb", "%mldb CREATE TABLE t AS SELECT 1 AS a", "%mldb SELEC 1",
             "%mldb SELECT a + 1 AS b FROM t",
             "from mldb.progress import bar\nwith bar(total=3, desc='work') as b:\n    b.update(3)"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = kernel(notebook, tmp_path)
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells[:2]):
            client.execute_cell(cell, index)
        with pytest.raises(CellExecutionError):  # "run all" stops here
            client.execute_cell(notebook.cells[2], 2)
        for index in (3, 4):
            client.execute_cell(notebook.cells[index], index)
    [error] = outputs_of(notebook.cells[2], "error")
    assert error.ename == "ProgrammingError"
    assert error.traceback == ['ProgrammingError (SQLSTATE 42601): Parser Error: syntax error at or near "SELEC"',
                               "LINE 1: SELEC 1", "        ^^^^^"]
    [table] = outputs_of(notebook.cells[3], "execute_result")  # the kernel is alive and the data kept
    assert "<table" in table.data["text/html"] and "1 row" in table.data["text/html"]
    [widget] = outputs_of(notebook.cells[4], "display_data")  # tqdm's notebook bar
    assert "application/vnd.jupyter.widget-view+json" in widget.data
