"""A UDF that holds a scale-out piece until the test lets it go (tests/test_scaleout_lifecycle.py).

``held(id, gate)`` returns ``id``. A batch with an id of 1000 or more first writes ``<gate>.started``
(the worker's pid) and then waits until the file ``gate`` exists, so a test can stop a job while a
worker is inside a piece, without making the piece do minutes of real work. Smaller ids pass at once.
"""

import os
import threading

import pyarrow as pa
import pyarrow.compute as pc

import mldb


@mldb.udf(params=["BIGINT", "VARCHAR"], returns="BIGINT")
def held(ids: pa.Array, gates: pa.Array) -> pa.Array:
    if len(ids) and pc.max(ids).as_py() is not None and pc.max(ids).as_py() >= 1000:
        gate = gates[0].as_py()
        with open(f"{gate}.started", "w") as started:
            started.write(str(os.getpid()))
        while not os.path.exists(gate):
            threading.Event().wait(0.02)
    return ids
