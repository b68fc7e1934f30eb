"""`python -m transforms`: a short tour that prints real derivatives."""

from __future__ import annotations


def main() -> None:
    import jax
    import jax.numpy as jnp

    import transforms as T

    jax.config.update("jax_enable_x64", True)
    print("transforms tour: our own JVP, partial evaluation and transpose, running on XLA\n")

    f = lambda x: jnp.sum(jnp.sin(x) * x**2)
    x = jnp.array([0.5, 1.0, 2.0])
    print("f(x) = sum(sin(x) * x**2) at x =", x)
    print("  grad f(x)            =", T.grad(f)(x))
    print("  closed form          =", jnp.cos(x) * x**2 + 2 * x * jnp.sin(x))

    g = lambda x: jnp.stack([x[0] * x[1], jnp.exp(x[2]), jnp.tanh(x[0])])
    print("\ng(x) = [x0*x1, exp(x2), tanh(x0)]: Jacobian (reverse mode)")
    print(T.jacobian(g)(x))

    rosen = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
    p = jnp.array([1.0, 1.0])
    print("\nRosenbrock Hessian at its minimum (1, 1):")
    print(T.hessian(rosen)(p))

    print("\nd^6/dx^6 sin(x) at x = 0.3 (grad nested six deep):", end=" ")
    d = jnp.sin
    for _ in range(6):
        d = T.grad(d)
    print(float(d(0.3)), " closed form:", float(-jnp.sin(0.3)))

    try:
        import transforms.tf as tf
    except ImportError:  # the tape is optional in a partial install
        return
    w = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        loss = w * w + 2.0 * w
    print("\nGradientTape: d(w^2 + 2w)/dw at w = 3:", float(tape.gradient(loss, w)))


if __name__ == "__main__":
    main()
