"""Progress bars for long work in Python steps (TRAIN epochs, EMBED batches, index builds).

    from mldb.progress import bar
    for epoch in bar(range(epochs), desc=f"TRAIN {name}", unit="epoch"):
        ...
    with bar(total=len(texts), desc="EMBED", unit="text") as progress:
        ...
        progress.update(len(batch))

Under Jupyter this is tqdm's notebook bar (a widget that stays in the cell's output); on a
terminal, tqdm's bar on stderr; elsewhere (pipes, logs, tests, the wire server) nothing.
Long SQL inside DuckDB (e.g. EMBED over many rows) already gets DuckDB's own progress
bar, in a terminal and in Jupyter alike.
"""

from __future__ import annotations

import sys


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm progress bar (over ``iterable``, if given) fit for where the code runs."""
    if in_notebook():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(iterable, total=total, desc=desc, unit=unit)
        except ImportError:  # no ipywidgets: tqdm's text bar in the cell's stderr instead
            pass
    from tqdm import tqdm

    interactive = in_notebook() or sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not interactive, file=sys.stderr)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell connected to a kernel)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None
