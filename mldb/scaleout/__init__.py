"""Scale-out on Ray: statements whose ML work is row-wise over file scans run as a Ray Data job.

The flow (design: issue 17): ``SET mldb_executor = 'ray'`` (``settings``) makes the last rewrite
rule (``plan.rewrite_scaleout``) look at the rewritten statement; when it is one file scan's
row-wise work (``plan.qualify``), the statement's ``Shape`` says how it goes out: rows streamed
back, partial aggregates combined here, or COPY files written by the workers. EXPLAIN shows it.
``executor.execute`` ships the models as catalog rows, runs ``worker.PieceWorker`` (DuckDB + mldb
in each actor) over the files, and streams the rows back or commits the COPY output by renaming a
staging directory. Ray is imported only where a job starts: ``import mldb`` stays light.
"""
