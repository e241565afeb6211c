"""Zero-shot text classification on EMBED: each text gets the label whose description is nearest.

    LOAD UDFS FROM 'udfs/zero_shot.py';
    SELECT body, zero_shot(body, 'sports, politics, cooking') AS topic FROM news;
    SELECT body, sentiment(body) FROM reviews;          -- 'positive' | 'negative'

No training: labels are embedded as "This text is about <label>." with the same model
as EMBED (all-MiniLM-L6-v2, offline) and compared by cosine similarity.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import mldb
from mldb.udf import embed

SENTIMENT = {"positive": "This is a positive text: great, happy, love it, excellent.",
             "negative": "This is a negative text: bad, sad, hate it, terrible."}


@mldb.udf(params=["VARCHAR", "VARCHAR"], returns="VARCHAR")
def zero_shot(texts: pa.Array, labels: pa.Array) -> pa.Array:
    """The best label of a comma-separated list for each text (NULL text -> NULL)."""
    out = np.full(len(texts), None, dtype=object)
    valid = np.asarray(texts.is_valid()) & np.asarray(labels.is_valid())
    if not valid.any():
        return pa.array(out, pa.string())
    rows = np.flatnonzero(valid)
    vectors = _normalized(embed(texts.filter(pa.array(valid)).to_pylist()))
    label_lists = np.asarray(labels.filter(pa.array(valid)).to_pylist(), dtype=object)
    for choice in np.unique(label_lists):  # usually one label list for the whole column
        names = [name.strip() for name in choice.split(",") if name.strip()]
        if not names:
            raise ValueError("zero_shot needs at least one label, e.g. 'sports, politics'")
        picked = label_lists == choice
        best = _best(vectors[picked], [f"This text is about {name}." for name in names])
        out[rows[picked]] = np.asarray(names, dtype=object)[best]
    return pa.array(out, pa.string())


@mldb.udf(params=["VARCHAR"], returns="VARCHAR")
def sentiment(texts: pa.Array) -> pa.Array:
    """'positive' or 'negative' by the nearer description (NULL text -> NULL)."""
    out = np.full(len(texts), None, dtype=object)
    valid = np.asarray(texts.is_valid())
    if valid.any():
        vectors = _normalized(embed(texts.filter(pa.array(valid)).to_pylist()))
        best = _best(vectors, list(SENTIMENT.values()))
        out[valid] = np.asarray(list(SENTIMENT), dtype=object)[best]
    return pa.array(out, pa.string())


def _best(vectors: np.ndarray, descriptions: list[str]) -> np.ndarray:
    return np.argmax(vectors @ _normalized(embed(descriptions)).T, axis=1)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
