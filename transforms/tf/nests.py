"""Nests of tensors as TF handles them: flattening with Tensors and Variables as leaves, dicts
in insertion order, and the `unconnected_gradients` option."""

from __future__ import annotations

import enum

from jax import tree_util

from .tensor import Tensor
from .variable import Variable, as_variable


class UnconnectedGradients(enum.Enum):
    """What `gradient` returns for a source the target does not depend on: None or zeros."""

    NONE = "none"
    ZERO = "zero"


def _unconnected(value) -> UnconnectedGradients:
    try:
        return UnconnectedGradients(value)
    except ValueError:
        raise ValueError(
            f"Unknown value for unconnected_gradients: {value!r}; use "
            "tf.UnconnectedGradients.NONE or tf.UnconnectedGradients.ZERO."
        ) from None


def _is_leaf(x) -> bool:
    return isinstance(x, Tensor | Variable)


def flatten(nest):
    """Flatten lists/tuples/dicts of tensors and variables (None entries kept as leaves);
    objects standing for Variables (Keras Variables) come back as those Variables."""
    flat, tree = tree_util.tree_flatten(nest, is_leaf=lambda x: x is None or _is_leaf(x))
    return [as_variable(x) for x in flat], tree


def in_order_of(template, value):
    """`value` (unflattened by `tree_util`, whose dicts come out key-sorted) with the dicts of
    `template` in their insertion order, as TF's `nest.pack_sequence_as` returns them."""
    if isinstance(template, dict) and isinstance(value, dict):
        return type(value)((k, in_order_of(template[k], value[k])) for k in template)
    if (
        isinstance(template, list | tuple)
        and isinstance(value, list | tuple)
        and len(template) == len(value)
    ):
        items = [in_order_of(a, b) for a, b in zip(template, value, strict=True)]
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def skeleton(nest):
    """`nest`'s containers with every leaf replaced by None: enough for `in_order_of`, and holds
    no tensors."""
    if isinstance(nest, dict):
        return type(nest)((k, skeleton(v)) for k, v in nest.items())
    if isinstance(nest, list):
        return [skeleton(v) for v in nest]
    if isinstance(nest, tuple):
        items = [skeleton(v) for v in nest]
        return type(nest)(*items) if hasattr(nest, "_fields") else tuple(items)
    return None


def unflatten_like(template, tree, leaves):
    """`tree_unflatten`, keeping `template`'s dict order (TF keeps insertion order)."""
    return in_order_of(template, tree_util.tree_unflatten(tree, leaves))
