"""Regenerate docs/higher-order-tanh.png, the home page's figure: `python docs/home_figure.py`."""

import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # a script, not a notebook: write the file without a display
import matplotlib.pyplot as plt

import transforms as T

jax.config.update("jax_enable_x64", True)

xs = jnp.linspace(-4, 4, 400)
f = jnp.tanh
fig, ax = plt.subplots(figsize=(8, 3.6))
for n in range(7):
    ax.plot(
        xs, jax.vmap(f)(xs), lw=2.5 if n == 0 else 1.5, label="tanh" if n == 0 else f"order {n}"
    )
    f = T.grad(f)
ax.set(xlabel="x", title="tanh and its first six derivatives: T.grad nested six times")
ax.legend(ncol=2, fontsize=9)
fig.tight_layout()
fig.savefig(pathlib.Path(__file__).with_name("higher-order-tanh.png"), dpi=110)
