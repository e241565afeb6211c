"""UDFs the scale-out tests load with LOAD UDFS (tests/test_scaleout_shipping.py): vectorized
functions on whole Arrow arrays, as every file under udfs/ is written."""

import pyarrow as pa
import pyarrow.compute as pc

import mldb


@mldb.udf(params=["BIGINT"], returns="BIGINT")
def double_it(values: pa.Array) -> pa.Array:
    """2 * x; NULL stays NULL."""
    return pc.multiply(values, 2)


@mldb.udf(params=["VARCHAR"], returns="VARCHAR")
def shout(texts: pa.Array) -> pa.Array:
    """The text in capitals with a '!' (NULL stays NULL)."""
    return pc.binary_join_element_wise(pc.utf8_upper(texts), pa.scalar("!"), "")
