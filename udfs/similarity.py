"""Semantic text similarity: the cosine similarity of two texts' embeddings (-1 .. 1).

    LOAD UDFS FROM 'udfs/similarity.py';
    SELECT text_similarity('cheap flights', 'low-cost airline tickets');   -- about 0.7
    SELECT a.id, b.id FROM faq a, faq b
     WHERE a.id < b.id AND text_similarity(a.question, b.question) > 0.8;  -- near-duplicates

Embeddings come from the same model and cache as EMBED, so each distinct text is
embedded once per process however often it appears.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import mldb
from mldb.udf import embed


@mldb.udf(params=["VARCHAR", "VARCHAR"], returns="DOUBLE")
def text_similarity(left: pa.Array, right: pa.Array) -> pa.Array:
    """Cosine similarity per row; NULL when either text is NULL."""
    valid = pc.and_(left.is_valid(), right.is_valid())
    scores = np.full(len(left), np.nan)
    if pc.any(valid).as_py():
        a = _normalized(embed(left.filter(valid).to_pylist()))
        b = _normalized(embed(right.filter(valid).to_pylist()))
        scores[np.asarray(valid)] = np.einsum("ij,ij->i", a, b)
    return pa.array(scores, mask=~np.asarray(valid))


def _normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
