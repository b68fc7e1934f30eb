"""The benchmark workloads, each written once per framework.

A workload is a `Case`: a name, a mode (`jit`, `eager` or `build`), a problem size and one
zero-argument thunk per implementation. The harness times the thunks interleaved. Every case has
a `transforms` and a `JAX` thunk (JAX's own autodiff, the reference); TensorFlow, PyTorch
(`torch.func`) and HIPS autograd thunks are added where those packages are installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import transforms as T

# Targets from the performance issue: ratio transforms / JAX, lower is better.
TARGETS = {"jit": 1.05, "build": 1.5, "eager": 0.5}


@dataclass
class Case:
    workload: str
    mode: str  # "jit" compiled call, "eager" un-jitted call, "build" make_jaxpr of the derivative
    size: int
    impls: dict[str, Callable[[], object]] = field(default_factory=dict)
    # For compiled cases: (ours, JAX's, args), un-jitted, to compare the optimised programs.
    programs: tuple | None = None

    @property
    def target(self) -> float:
        return TARGETS[self.mode]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- the functions being differentiated ---------------------------------------------------------


def mlp_params(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (
            jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32),
            jnp.zeros((b,), jnp.float32),
        )
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def _loss_of_params(params, xb, yb):
    return mlp_loss(params, xb, yb)


def mlp_loss(params, x, y):
    h = x
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = params[-1]
    return jnp.mean((h @ w + b - y) ** 2)


def dense_problem(n, seed=1):
    """A fixed matrix and a point for the R^n workloads."""
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.standard_normal((n, n)) / np.sqrt(n), jnp.float32)
    x = jnp.asarray(rng.standard_normal(n), jnp.float32)
    v = jnp.asarray(rng.standard_normal(n), jnp.float32)
    return a, x, v


def scalar_fn(a):
    """R^n -> R: smooth, with every Hessian entry nonzero."""
    return lambda x: jnp.sum(jnp.tanh(a @ x) ** 2) + 0.1 * jnp.sum(jnp.sin(x) * x**2)


def vector_fn(a):
    """R^n -> R^n with a dense Jacobian."""
    return lambda x: jnp.tanh(a @ x) * jnp.sin(x)


_CHAIN_OPS = (jnp.sin, lambda x: x * 1.001, jnp.tanh, lambda x: x + 0.5)


def chain_fn(n):
    """A chain of `n` element-wise equations followed by one sum (n + 1 equations in all)."""

    def f(x):
        for i in range(n):
            x = _CHAIN_OPS[i % len(_CHAIN_OPS)](x)
        return jnp.sum(x)

    return f


# --- cases --------------------------------------------------------------------------------------


def _hvp_jax(f):
    return lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1]


def _hvp_ours(f):
    return lambda x, v: T.hvp(f, (x,), (v,))


def _mlp_direction(params, seed=3):
    """A tangent direction in parameter space, for the Hessian-vector product."""
    rng = np.random.default_rng(seed)
    return [
        (
            jnp.asarray(rng.standard_normal(w.shape), w.dtype),
            jnp.asarray(rng.standard_normal(b.shape), b.dtype),
        )
        for w, b in params
    ]


def _cold_build(f, x):
    """Trace `transforms.grad(f)` from scratch: no derivative program cached from before."""
    T.clear_caches()
    return jax.make_jaxpr(T.grad(f))(x)


def dense_cases(mlp_sizes=(256, 512, 512, 10), batch=128, n=400, others=True) -> list[Case]:
    """MLP gradient and Hessian-vector product; Hessian, jacfwd and jacrev in R^n; jit and eager."""
    params = mlp_params(mlp_sizes)
    rng = np.random.default_rng(2)
    xb = jnp.asarray(rng.standard_normal((batch, mlp_sizes[0])), jnp.float32)
    yb = jnp.asarray(rng.standard_normal((batch, mlp_sizes[-1])), jnp.float32)
    a, x, _ = dense_problem(n)
    f, g = scalar_fn(a), vector_fn(a)
    vparams = _mlp_direction(params)
    loss = partial(_loss_of_params, xb=xb, yb=yb)

    ours = {
        "mlp grad": (T.grad(mlp_loss), (params, xb, yb)),
        "hessian": (T.hessian(f), (x,)),
        "jacfwd": (T.jacfwd(g), (x,)),
        "jacrev": (T.jacrev(g), (x,)),
        "mlp hvp": (_hvp_ours(loss), (params, vparams)),
    }
    theirs = {
        "mlp grad": jax.grad(mlp_loss),
        "hessian": jax.hessian(f),
        "jacfwd": jax.jacfwd(g),
        "jacrev": jax.jacrev(g),
        "mlp hvp": _hvp_jax(loss),
    }
    n_params = sum(w.size + b.size for w, b in params)
    sizes = {"mlp grad": n_params, "mlp hvp": n_params}
    others = _other_dense(params, vparams, xb, yb, a, x) if others else {}
    cases = []
    for mode in ("jit", "eager"):
        for name, (fn, args) in ours.items():
            wrap = jax.jit if mode == "jit" else (lambda h: h)
            mine, ref = wrap(fn), wrap(theirs[name])
            case = Case(name, mode, sizes.get(name, n))
            if mode == "jit":
                case.programs = (fn, theirs[name], args)
            case.impls["transforms"] = lambda mine=mine, args=args: mine(*args)
            case.impls["JAX"] = lambda ref=ref, args=args: ref(*args)
            for lib, table in others.items():
                if (name, mode) in table:
                    case.impls[lib] = table[(name, mode)]
            cases.append(case)
    return cases


def chain_cases(sizes=(100, 1000, 4000, 10000), eager=True, others_up_to=1000) -> list[Case]:
    """Build time of the derivative program of n-equation chains, and eager gradient calls."""
    cases = []
    x = jnp.linspace(0.1, 0.9, 8, dtype=jnp.float32)
    for n in sizes:
        f = chain_fn(n)
        build = Case("chain", "build", n)
        build.impls["transforms"] = lambda f=f: _cold_build(f, x)
        build.impls["JAX"] = lambda f=f: jax.make_jaxpr(jax.grad(f))(x)
        if n <= others_up_to:
            for lib, thunk in _other_chain_build(n).items():
                build.impls[lib] = thunk
        cases.append(build)
        if eager:
            call = Case("chain", "eager", n)
            mine, ref = T.grad(f), jax.grad(f)
            call.impls["transforms"] = lambda mine=mine: mine(x)
            call.impls["JAX"] = lambda ref=ref: ref(x)
            if n <= others_up_to:
                for lib, thunk in _other_chain_eager(n).items():
                    call.impls[lib] = thunk
            cases.append(call)
    return cases


# --- other frameworks ---------------------------------------------------------------------------


def _other_dense(params, vparams, xb, yb, a, x) -> dict:
    out = {}
    if installed("tensorflow"):
        out["TensorFlow"] = _tf_dense(params, vparams, xb, yb, a, x)
    if installed("torch"):
        out["PyTorch"] = _torch_dense(params, vparams, xb, yb, a, x)
    if installed("autograd"):
        out["autograd"] = _autograd_dense(params, vparams, xb, yb, a, x)
    return out


def _other_chain_build(n) -> dict:
    out = {}
    if installed("tensorflow"):
        tf = _tf()
        f = _tf_chain(n)
        spec = tf.TensorSpec((8,), tf.float32)

        def build():
            @tf.function
            def g(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = f(x)
                return tape.gradient(y, x)

            return g.get_concrete_function(spec)

        out["TensorFlow"] = build
    return out


def _other_chain_eager(n) -> dict:
    out = {}
    x0 = np.linspace(0.1, 0.9, 8, dtype=np.float32)
    if installed("tensorflow"):
        tf = _tf()
        f = _tf_chain(n)
        x = tf.constant(x0)

        def call():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = f(x)
            return tape.gradient(y, x)

        out["TensorFlow"] = call
    if installed("torch"):
        import torch

        xt = torch.tensor(x0)
        torch_ops = (torch.sin, lambda z: z * 1.001, torch.tanh, lambda z: z + 0.5)

        def ft(z):
            for i in range(n):
                z = torch_ops[i % 4](z)
            return z.sum()

        out["PyTorch"] = lambda: torch.func.grad(ft)(xt)
    if installed("autograd"):
        import autograd
        import autograd.numpy as anp

        autograd_ops = (anp.sin, lambda z: z * 1.001, anp.tanh, lambda z: z + 0.5)

        def fa(z):
            for i in range(n):
                z = autograd_ops[i % 4](z)
            return anp.sum(z)

        ga = autograd.grad(fa)
        out["autograd"] = lambda: ga(x0)
    return out


def _tf():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def _tf_chain(n):
    tf = _tf()
    ops = (tf.sin, lambda z: z * 1.001, tf.tanh, lambda z: z + 0.5)

    def f(x):
        for i in range(n):
            x = ops[i % 4](x)
        return tf.reduce_sum(x)

    return f


def _tf_dense(params, vparams, xb, yb, a, x) -> dict:
    tf = _tf()
    flat = [tf.constant(np.asarray(p)) for wb in params for p in wb]
    vflat = [tf.constant(np.asarray(p)) for wb in vparams for p in wb]
    txb, tyb = tf.constant(np.asarray(xb)), tf.constant(np.asarray(yb))
    ta, tx = tf.constant(np.asarray(a)), tf.constant(np.asarray(x))

    def loss(ps):
        h = txb
        pairs = list(zip(ps[::2], ps[1::2], strict=True))
        for w, b in pairs[:-1]:
            h = tf.tanh(h @ w + b)
        w, b = pairs[-1]
        return tf.reduce_mean((h @ w + b - tyb) ** 2)

    def f(z):
        return tf.reduce_sum(tf.tanh(tf.linalg.matvec(ta, z)) ** 2) + 0.1 * tf.reduce_sum(
            tf.sin(z) * z**2
        )

    def g(z):
        return tf.tanh(tf.linalg.matvec(ta, z)) * tf.sin(z)

    def mlp_grad():
        with tf.GradientTape() as tape:
            tape.watch(flat)
            y = loss(flat)
        return tape.gradient(y, flat)

    def hessian():
        with tf.GradientTape() as outer:
            outer.watch(tx)
            with tf.GradientTape() as inner:
                inner.watch(tx)
                y = f(tx)
            dy = inner.gradient(y, tx)
        return outer.jacobian(dy, tx)

    def jacrev():
        with tf.GradientTape() as tape:
            tape.watch(tx)
            y = g(tx)
        return tape.jacobian(y, tx)

    def mlp_hvp():
        with tf.autodiff.ForwardAccumulator(flat, vflat) as acc:
            with tf.GradientTape() as tape:
                tape.watch(flat)
                y = loss(flat)
            dy = tape.gradient(y, flat)
        return acc.jvp(dy)

    eager = {"mlp grad": mlp_grad, "hessian": hessian, "jacrev": jacrev, "mlp hvp": mlp_hvp}
    out = {}
    for name, fn in eager.items():
        out[(name, "eager")] = fn
        out[(name, "jit")] = tf.function(fn)
    return out


def _torch_dense(params, vparams, xb, yb, a, x) -> dict:
    import torch
    from torch.func import grad, hessian, jacfwd, jacrev, jvp

    tp = [torch.tensor(np.asarray(p)) for wb in params for p in wb]
    tv = [torch.tensor(np.asarray(p)) for wb in vparams for p in wb]
    txb, tyb = torch.tensor(np.asarray(xb)), torch.tensor(np.asarray(yb))
    ta, tx = torch.tensor(np.asarray(a)), torch.tensor(np.asarray(x))

    def loss(ps):
        h = txb
        pairs = list(zip(ps[::2], ps[1::2], strict=True))
        for w, b in pairs[:-1]:
            h = torch.tanh(h @ w + b)
        w, b = pairs[-1]
        return ((h @ w + b - tyb) ** 2).mean()

    f = lambda z: (torch.tanh(ta @ z) ** 2).sum() + 0.1 * (torch.sin(z) * z**2).sum()
    g = lambda z: torch.tanh(ta @ z) * torch.sin(z)
    return {
        ("mlp grad", "eager"): lambda: grad(loss)(tp),
        ("hessian", "eager"): lambda: hessian(f)(tx),
        ("jacfwd", "eager"): lambda: jacfwd(g)(tx),
        ("jacrev", "eager"): lambda: jacrev(g)(tx),
        ("mlp hvp", "eager"): lambda: jvp(grad(loss), (tp,), (tv,))[1],
    }


def _autograd_dense(params, vparams, xb, yb, a, x) -> dict:
    import autograd
    import autograd.numpy as anp

    ap = [np.asarray(p) for wb in params for p in wb]
    av = [np.asarray(p) for wb in vparams for p in wb]
    axb, ayb = np.asarray(xb), np.asarray(yb)
    aa, ax = np.asarray(a), np.asarray(x)

    def loss(ps):
        h = axb
        pairs = list(zip(ps[::2], ps[1::2], strict=True))
        for w, b in pairs[:-1]:
            h = anp.tanh(h @ w + b)
        w, b = pairs[-1]
        return anp.mean((h @ w + b - ayb) ** 2)

    f = lambda z: anp.sum(anp.tanh(aa @ z) ** 2) + 0.1 * anp.sum(anp.sin(z) * z**2)
    g = lambda z: anp.tanh(aa @ z) * anp.sin(z)
    # autograd.hessian_vector_product wants one array; the parameters are a list of them.
    grad_loss = autograd.grad(loss)

    def hvp(ps, vs):
        return autograd.grad(
            lambda q: sum(anp.sum(gi * vi) for gi, vi in zip(grad_loss(q), vs, strict=True))
        )(ps)

    return {
        ("mlp grad", "eager"): lambda: autograd.grad(loss)(ap),
        ("hessian", "eager"): lambda: autograd.hessian(f)(ax),
        ("jacrev", "eager"): lambda: autograd.jacobian(g)(ax),
        ("mlp hvp", "eager"): lambda: hvp(ap, av),
    }
