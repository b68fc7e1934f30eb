"""`tf.data`: a small `Dataset` for in-memory training pipelines (slices of arrays, batched,
shuffled, mapped, repeated), iterated eagerly in Python and yielding Tensors.

Elements are nests (tuples, dicts, single tensors) of Tensors, as in TF. Pipelines run in the
calling thread: `prefetch` and `num_parallel_calls` are accepted and change nothing. For
pipelines that read files, decode images or need parallel workers, feed Tensors from a
dedicated loader (`tf.data` itself, `grain`, or a PyTorch `DataLoader`) into the training
step instead.
"""

from __future__ import annotations

import itertools
import secrets

import numpy as np

from .errors import OutOfRangeError
from .ops import _t, stack
from .tensor import Tensor

__all__ = ["AUTOTUNE", "Dataset", "INFINITE_CARDINALITY", "Iterator", "UNKNOWN_CARDINALITY"]

AUTOTUNE = -1
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2


def _map_nest(fn, nest):
    """`fn` on every leaf, keeping tuples, lists and dicts (in their key order)."""
    if isinstance(nest, dict):
        return type(nest)((k, _map_nest(fn, v)) for k, v in nest.items())
    if isinstance(nest, tuple) and hasattr(nest, "_fields"):
        return type(nest)(*[_map_nest(fn, v) for v in nest])
    if isinstance(nest, tuple | list):
        return tuple(_map_nest(fn, v) for v in nest)
    return fn(nest)


def _leaves(nest):
    if isinstance(nest, dict):
        return [x for v in nest.values() for x in _leaves(v)]
    if isinstance(nest, tuple | list):
        return [x for v in nest for x in _leaves(v)]
    return [nest]


def _stack_nests(nests):
    """One nest of the same structure, each leaf the stack of those leaves (for `batch`)."""
    first = nests[0]
    if isinstance(first, dict):
        return type(first)((k, _stack_nests([n[k] for n in nests])) for k in first)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*[_stack_nests([n[i] for n in nests]) for i in range(len(first))])
    if isinstance(first, tuple | list):
        return tuple(_stack_nests([n[i] for n in nests]) for i in range(len(first)))
    return stack(list(nests))


class Dataset:
    """A sequence of elements with TF's `tf.data.Dataset` methods (each returns a new Dataset;
    iterating it yields nests of Tensors).

    Example:
      >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(100, seed=0).batch(32)
      >>> for xb, yb in ds.repeat(2): step(xb, yb)
    """

    def __init__(self, make_iterator, cardinality):
        self._make_iterator = make_iterator  # () -> a fresh Python iterator of elements
        self._cardinality = cardinality

    # --- sources ----------------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors, name=None) -> Dataset:
        """One element per index of the first axis of every tensor in the nest `tensors`."""
        arrays = _map_nest(lambda t: np.asarray(_t(t).numpy()), tensors)
        sizes = {a.shape[0] if a.ndim else None for a in _leaves(arrays)}
        if None in sizes:
            raise ValueError("Unbatching a tensor is only supported for rank >= 1")
        if len(sizes) != 1:
            raise ValueError(
                f"Dimensions of the components must match: got first dimensions {sorted(sizes)}"
            )
        (n,) = sizes

        def make():
            for i in range(n):
                yield _map_nest(lambda a, i=i: Tensor(_device(a[i])), arrays)

        return Dataset(make, n)

    @staticmethod
    def from_tensors(tensors, name=None) -> Dataset:
        """One element: `tensors` itself."""
        element = _map_nest(_t, tensors)
        return Dataset(lambda: iter([element]), 1)

    @staticmethod
    def range(*args, output_type=np.int64, name=None) -> Dataset:
        """The integers of `range(*args)` as scalar Tensors."""
        from .ops import _index_dtype

        values = range(*args)
        dtype = _index_dtype(output_type)
        return Dataset(lambda: (Tensor(_device(np.asarray(v, dtype))) for v in values), len(values))

    @staticmethod
    def zip(*datasets, name=None) -> Dataset:
        """Tuples of the elements of `datasets` (a tuple or dict of Datasets), shortest first."""
        if len(datasets) == 1 and isinstance(datasets[0], tuple | dict):
            datasets = datasets[0]
        if isinstance(datasets, dict):
            keys = list(datasets)

            def make_dict():
                for items in zip(*[iter(datasets[k]) for k in keys], strict=False):
                    yield dict(zip(keys, items, strict=True))

            return Dataset(make_dict, _min_cardinality([datasets[k] for k in keys]))
        return Dataset(
            lambda: zip(*[iter(d) for d in datasets], strict=False),
            _min_cardinality(datasets),
        )

    # --- transformations --------------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None) -> Dataset:
        """`map_func` on each element (a tuple element is passed as separate arguments)."""

        def make():
            for element in self._make_iterator():
                out = map_func(*element) if _is_plain_tuple(element) else map_func(element)
                yield _map_nest(_t, out)

        return Dataset(make, self._cardinality)

    def filter(self, predicate, name=None) -> Dataset:
        """The elements for which `predicate` (a scalar boolean) holds."""

        def make():
            for element in self._make_iterator():
                keep = predicate(*element) if _is_plain_tuple(element) else predicate(element)
                if bool(keep):
                    yield element

        return Dataset(make, UNKNOWN_CARDINALITY)

    def batch(
        self,
        batch_size,
        drop_remainder=False,
        num_parallel_calls=None,
        deterministic=None,
        name=None,
    ) -> Dataset:
        """Consecutive elements stacked into batches of `batch_size` (the last one smaller
        unless `drop_remainder`)."""
        size = int(batch_size)
        if size <= 0:
            raise ValueError("batch_size must be positive.")

        def make():
            it = self._make_iterator()
            while True:
                chunk = list(itertools.islice(it, size))
                if not chunk or (drop_remainder and len(chunk) < size):
                    return
                yield _stack_nests(chunk)

        card = self._cardinality
        if card >= 0:
            card = card // size if drop_remainder else -(-card // size)
        return Dataset(make, card)

    def unbatch(self, name=None) -> Dataset:
        """The rows of each element's tensors as separate elements."""

        def make():
            for element in self._make_iterator():
                yield from iter(Dataset.from_tensor_slices(element))

        return Dataset(make, UNKNOWN_CARDINALITY)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True, name=None):
        """Elements drawn at random from a buffer of `buffer_size` (TF's algorithm; not TF's
        random numbers). With `seed` (or a global `tf.random.set_seed`) the orders repeat from
        run to run; `reshuffle_each_iteration` gives each pass over the data a new order."""
        from . import random as tf_random

        size = int(buffer_size)
        if size <= 0:
            raise ValueError("buffer_size must be greater than zero.")
        if seed is not None:
            base = int(seed)
        elif tf_random._global_seed[0] is not None:
            base = tf_random._global_seed[0]
        else:
            base = secrets.randbits(31)
        epochs = itertools.count()

        def make():
            epoch = next(epochs) if reshuffle_each_iteration else 0
            rng = np.random.default_rng([base, epoch])
            it = self._make_iterator()
            buffer = list(itertools.islice(it, size))
            for element in it:
                j = int(rng.integers(len(buffer)))
                yield buffer[j]
                buffer[j] = element
            while buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))

        return Dataset(make, self._cardinality)

    def repeat(self, count=None, name=None) -> Dataset:
        """The dataset `count` times over (forever for None or -1)."""
        n = -1 if count is None else int(count)

        def make():
            passes = itertools.count() if n < 0 else range(n)
            for _ in passes:
                yield from self._make_iterator()

        card = self._cardinality
        if n < 0:
            card = INFINITE_CARDINALITY if card != 0 else 0
        elif card >= 0:
            card = card * n
        return Dataset(make, card)

    def take(self, count, name=None) -> Dataset:
        """The first `count` elements (all for -1)."""
        n = int(count)
        card = self._cardinality
        if n >= 0:
            if card == INFINITE_CARDINALITY:
                card = n
            elif card >= 0:
                card = min(card, n)
        return Dataset(
            lambda: self._make_iterator() if n < 0 else itertools.islice(self._make_iterator(), n),
            card,
        )

    def skip(self, count, name=None) -> Dataset:
        """All but the first `count` elements."""
        n = int(count)
        card = self._cardinality
        if card >= 0:
            card = max(card - n, 0)
        return Dataset(lambda: itertools.islice(self._make_iterator(), n, None), card)

    def prefetch(self, buffer_size, name=None) -> Dataset:
        """The same dataset: elements are produced on demand in the calling thread."""
        return self

    def cache(self, filename="", name=None) -> Dataset:
        """The same elements, computed once: the first full pass is stored in memory and later
        passes replay it (a `filename` is not supported: the cache is in memory only)."""
        if filename:
            raise NotImplementedError(
                "Dataset.cache(filename) is not supported: this tf.data caches in memory only."
            )
        store: list = []
        complete = [False]

        def make():
            if complete[0]:
                yield from store
                return
            store.clear()
            for element in self._make_iterator():
                store.append(element)
                yield element
            complete[0] = True

        return Dataset(make, self._cardinality)

    def enumerate(self, start=0, name=None) -> Dataset:
        """`(index, element)` pairs."""
        from .ops import _index_dtype

        dtype = _index_dtype(np.int64)

        def make():
            for i, element in enumerate(self._make_iterator(), start):
                yield (Tensor(_device(np.asarray(i, dtype))), element)

        return Dataset(make, self._cardinality)

    # --- consuming --------------------------------------------------------------------------------
    def __iter__(self):
        return Iterator(self._make_iterator())

    def as_numpy_iterator(self):
        """Elements as nests of NumPy values."""
        for element in self._make_iterator():
            yield _map_nest(lambda t: t.numpy(), element)

    def cardinality(self) -> Tensor:
        """The number of elements; -1 (INFINITE) or -2 (UNKNOWN) as in TF."""
        from .ops import _index_dtype

        return Tensor(_device(np.asarray(self._cardinality, _index_dtype(np.int64))))

    def __len__(self):
        if self._cardinality == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if self._cardinality == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return self._cardinality

    def reduce(self, initial_state, reduce_func, name=None):
        """Fold the elements into `initial_state` with `reduce_func(state, element)`."""
        state = _map_nest(_t, initial_state)
        for element in self._make_iterator():
            state = _map_nest(_t, reduce_func(state, element))
        return state


class Iterator:
    """An iterator over a Dataset: `next()` ends with StopIteration, `get_next()` with TF's
    `tf.errors.OutOfRangeError`."""

    def __init__(self, it):
        self._it = it

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def get_next(self, name=None):
        try:
            return next(self._it)
        except StopIteration:
            raise OutOfRangeError(None, None, "End of sequence") from None


def _is_plain_tuple(x) -> bool:
    return isinstance(x, tuple) and not hasattr(x, "_fields")


def _min_cardinality(datasets):
    cards = [d._cardinality for d in datasets]
    finite = [c for c in cards if c >= 0]
    if finite:
        return min(finite)
    return UNKNOWN_CARDINALITY if UNKNOWN_CARDINALITY in cards else INFINITE_CARDINALITY


def _device(a):
    import jax.numpy as jnp

    return jnp.asarray(a)
