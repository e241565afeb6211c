"""Running a model's network on PREDICT's batches: reused buffers, one torch thread.

PREDICT calls the network once per DuckDB vector (2048 rows), from DuckDB's threads, many
hundred times a second. Two costs that a plain ``module(x)`` pays on every call are cut here:

- **Allocation.** The encoded input and each layer's output is a fresh tensor; from about
  128 KB on (2048 rows x 64 floats is 512 KB) the allocator maps new pages from the kernel
  and faults them in, every call. Measured here, 8192 rows through a 16-64-32-1 MLP: 3 ms with reused buffers against
  14-17 ms with fresh ones. ``Network`` runs a ``Linear`` / ``Sequential(Linear, ReLU, ...)``
  module as ``addmm`` into per-thread buffers kept between calls (``relu_`` in place), and
  ``features.Encoder`` fills one kept matrix.
- **Threads.** torch's intra-op threads spin and wait for each other at the end of every op;
  on a batch of a few thousand rows two threads are slower than one, and while DuckDB runs
  PREDICT on each of its threads (torch releases the GIL in ``addmm``) they fight for the same
  cores (1M rows: 8.2 s with 2 torch threads and 1 DuckDB thread, 1.4 s with 1 and 1).
  ``predict_threads`` picks the intra-op threads for one call; ``mldb.threads.torch_threads``
  sets them for the call and puts the previous setting back.
"""

from __future__ import annotations

import threading

from mldb.threads import cores, torch_threads

WORK_PER_THREAD = 5e8  # rows x weights of one call that make a second intra-op thread pay


def predict_threads(rows: int, weights: int) -> int:
    """torch intra-op threads for one forward pass of ``rows`` through ``weights`` weights.

    One, unless the call is big enough that a second thread's barriers are paid back (a few
    hundred thousand rows of a small MLP); DuckDB already runs a call per core."""
    return max(1, min(cores(), int(rows * weights // WORK_PER_THREAD)))


class Network:
    """A loaded module run on float32 batches, its layers' outputs written into reused buffers.

    ``module`` is what ``algorithms.build`` makes: a ``Linear``, or a ``Sequential`` of
    ``Linear`` / ``ReLU`` / ``Dropout`` (identity at inference). Anything else runs as
    ``module(x)``. Buffers are per thread (DuckDB calls PREDICT from several at once) and per
    row count; the result is a view of the last buffer, valid until that thread's next call.
    """

    def __init__(self, module):
        self.module = module
        self.layers = _layers(module)  # [(weight.T, bias, relu after)] or None
        self.weights = sum(parameter.numel() for parameter in module.parameters())
        self._kept = ThreadBuffers()

    def __call__(self, x):
        """(rows, outputs) float32 tensor for a (rows, inputs) float32 tensor (any strides)."""
        import torch

        with torch.inference_mode(), torch_threads(predict_threads(len(x), self.weights)):
            if self.layers is None:
                return self.module(x)
            for (weight, bias, relu), out in zip(self.layers, self._buffers(len(x))):
                torch.addmm(bias, x, weight, out=out)
                if relu:
                    out.relu_()
                x = out
            return x

    def _buffers(self, rows: int) -> list:
        import torch

        return self._kept.get(rows, lambda: [torch.empty(rows, weight.shape[1]) for weight, _, _ in self.layers])


MAX_KEPT_ROWS = 65_536  # a bigger call (a whole table predicted from Python) gets buffers of its own


class ThreadBuffers:
    """Buffers reused between calls, per thread and per row count (a few sizes: DuckDB's full
    vectors and the last, shorter one). ``get(rows, make)`` returns this thread's, made once;
    above ``MAX_KEPT_ROWS`` rows, a new one each time (a cached model must not hold, say, a
    1M-row training table's worth of buffers)."""

    def __init__(self):
        self._local = threading.local()

    def get(self, rows: int, make):
        if rows > MAX_KEPT_ROWS:
            return make()
        kept = getattr(self._local, "kept", None)
        if kept is None or len(kept) > 4 and rows not in kept:
            kept = self._local.kept = {}
        if rows not in kept:
            kept[rows] = make()
        return kept[rows]


def _layers(module) -> list | None:
    import torch.nn as nn

    modules = list(module) if isinstance(module, nn.Sequential) else [module]
    layers = []
    for layer in modules:
        if isinstance(layer, nn.Linear) and layer.bias is not None:
            layers.append([layer.weight.detach().t(), layer.bias.detach(), False])
        elif isinstance(layer, nn.ReLU) and layers:
            layers[-1][2] = True
        elif not isinstance(layer, nn.Dropout):
            return None
    return [tuple(layer) for layer in layers] or None
