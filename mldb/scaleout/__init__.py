"""Scale-out on Ray (issue 17): the same SQL, run per input file by Ray Data actors.

The flow: the planner recognises a statement that can go out and hands over a SQL fragment over
``__mldb_piece`` plus the input files; ``executor.execute`` ships the models as catalog rows, runs
``worker.PieceWorker`` (DuckDB + mldb in each actor) over the files, and streams the rows back or
commits the COPY output by renaming a staging directory. Ray is imported only inside functions.
"""
