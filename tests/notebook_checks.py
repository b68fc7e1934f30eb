# ruff: noqa: E501  (the checks are code in strings, run in the notebooks' kernels)
"""Checks run in each tutorial's kernel after its last cell (see tests/test_notebooks.py).

Each entry is Python source that reads the notebook's own variables and asserts on them, with
closed forms, finite differences and JAX's autodiff as the oracle (JAX is used here, never in
`transforms/`). Keeping them here leaves the notebooks readable.
"""

CHECKS: dict[str, str] = {}

CHECKS["01_gradients_and_pytrees"] = """
import jax, jax.numpy as jnp
assert jnp.allclose(g, closed_form, rtol=1e-12)
assert abs(slope_fd - g @ v) < 1e-7
assert jnp.allclose(dw, 2 * xs.T @ r / len(ys)) and jnp.allclose(db, 2 * jnp.mean(r))
assert jnp.allclose(aux["max_abs_err"], jnp.max(jnp.abs(r)))
p0 = {"layers": [{"w": jnp.full((2, 3), 0.1), "b": jnp.zeros(3)},
                 {"w": jnp.full((3, 1), -0.2), "b": jnp.zeros(1)}], "scale": jnp.array(1.5)}
ref = jax.grad(mse)(p0, xs, ys)
assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(ref)
for ours, theirs in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref)):
    assert jnp.allclose(ours, theirs, rtol=1e-10, atol=1e-12)
assert losses[-1] < 0.05 * losses[0]
"""

CHECKS["02_higher_order"] = """
import math, jax, jax.numpy as jnp, numpy as np
t = jnp.tanh(xs)
assert jnp.allclose(tanh_derivs[1], 1 - t**2) and jnp.allclose(tanh_derivs[2], -2 * t * (1 - t**2))
ref = jnp.tanh
for n in range(1, 7):
    ref = jax.grad(ref)
    assert jnp.allclose(tanh_derivs[n], jax.vmap(ref)(xs), rtol=1e-10, atol=1e-10), n
for n, d in enumerate(derivs):
    assert abs(d(x0) - f_closed(n, x0)) < 1e-10 * max(1, abs(f_closed(n, x0)))
assert abs(d4_fwd_over_rev(x0) - f_closed(4, x0)) < 1e-10 and abs(d4_fwd(x0) - f_closed(4, x0)) < 1e-10
assert T.grad(inner)(1.0) == 1.0
assert np.allclose(coeffs, [0, 1, 1, 1 / 3, 0, -1 / 30, -1 / 90], atol=1e-12)
for N in range(1, 7):
    err = abs(taylor(coeffs[: N + 1], a, 0.05) - float(f(0.05)))
    assert err < 2 * 0.05 ** (N + 1), (N, err)
assert jnp.allclose(d3(grid9), f_closed(3, np.asarray(grid9)), atol=1e-10)
"""

CHECKS["03_forward_vs_reverse"] = """
import jax, jax.numpy as jnp, numpy as np
J_closed = jnp.array([[x[1], x[0], 0.0], [0.0, 0.0, jnp.cos(x[2])], [2 * x[0], 0.0, 0.0]])
assert jnp.allclose(Jt, J_closed @ t) and jnp.allclose(cJ, c @ J_closed)
assert jnp.allclose(c @ Jt, cJ @ t)
for J in (J_fwd, J_rev, J_auto):
    assert jnp.allclose(J, J_closed)
g_big = make(1024, 4)
assert jnp.allclose(J_full, jax.jacrev(g_big)(xk), atol=1e-10)
assert jnp.array_equal(J_full, J_chunked) or jnp.allclose(J_full, J_chunked, rtol=1e-14, atol=0)
assert jnp.allclose(T.jacrev(make(4, 64))(jnp.linspace(-1, 1, 4)), jax.jacfwd(make(4, 64))(jnp.linspace(-1, 1, 4)))
assert wide.shape == tall.shape == (len(sizes), 2) and np.all(wide > 0) and np.all(tall > 0)
"""

CHECKS["04_hessians_three_ways"] = """
import jax, jax.numpy as jnp, numpy as np
x_, y_ = p0
H_closed = jnp.array([[2 - 400 * (y_ - 3 * x_**2), -400 * x_], [-400 * x_, 200.0]])
assert jnp.allclose(H, H_closed) and jnp.allclose(H, jax.hessian(rosenbrock)(p0))
assert np.linalg.norm(newton_path[-1] - 1) < 1e-10 and np.linalg.norm(gd_path[-1] - 1) > 1e-4
assert jnp.allclose(Hv, jax.jit(jax.hessian(rosenbrock))(z0) @ v)
assert jnp.allclose(jax.grad(logistic_loss)(w_ncg), 0.0, atol=1e-8)  # Newton-CG reached the optimum
assert gd_history[-1, 1] - ncg_history[-1, 1] > 1e-6  # gradient descent had not
assert ncg_history[-1, 0] < 300
assert jnp.allclose(H_ce, jax.jit(jax.hessian(cross_entropy))(theta), atol=1e-10)
J = jax.jit(jax.jacfwd(logits))(theta)  # (60, 3, 27)
p = jax.nn.softmax(logits(theta))
M = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
G = jnp.einsum("nap,nab,nbq->pq", J, M, J) / len(labels)
assert jnp.allclose(F_ce, G, atol=1e-10) and jnp.allclose(F_ce, F_ce.T, atol=1e-12)
# the Fisher as the expected outer product of the score, log p_c's gradient, over c ~ p
scores = J - jnp.einsum("nc,ncp->np", p, J)[:, None, :]
F_expect = jnp.einsum("nc,ncp,ncq->pq", p, scores, scores) / len(labels)
assert jnp.allclose(F_ce, F_expect, atol=1e-10)
assert eig_H.min() < -1e-3 and eig_F.min() > -1e-10
"""

CHECKS["11_inside_the_engine"] = """
import jax, jax.numpy as jnp
assert [e.primitive.name for e in closed.jaxpr.eqns] == ["sin", "mul", "integer_pow", "add"]
assert "cos" in names and len(jvp_prog.jaxpr.jaxpr.outvars) == 2
out, out_dot = jax.core.eval_jaxpr(jvp_prog.jaxpr.jaxpr, jvp_prog.jaxpr.consts, x, y, tx, ty)
assert jnp.allclose(out, f(x, y)) and jnp.allclose(out_dot, expected)
assert expected == (jnp.cos(x) * y + 2 * x) * tx + jnp.sin(x) * ty
assert len(jvp_x.jaxpr.jaxpr.eqns) < len(jvp_prog.jaxpr.jaxpr.eqns)
assert linear_ops <= {"mul", "add", "add_any"}, linear_ops
assert lin.num_residuals == 4
assert not any(e.primitive.name in ("sin", "cos") for e in lin.split.linear.eqns)
assert jnp.allclose(f_jvp(tx, ty), expected)
assert jnp.allclose(g[0], y * jnp.cos(x) + 2 * x) and jnp.allclose(g[1], jnp.sin(x))
assert jnp.allclose(lhs, rhs)
assert jnp.allclose(T.grad(T.grad(f))(x, y), -y * jnp.sin(x) + 2)
for n in range(1, 6):
    assert jnp.allclose(nested(f, n, "grad")(x, y), nested(f, n, "jvp")(x, y))
    ref = f
    for _ in range(n):
        ref = jax.grad(ref)
    assert jnp.allclose(nested(f, n, "grad")(x, y), ref(x, y))
assert all(2 * a - 10 <= b for a, b in zip(counts["jvp"][1:], counts["jvp"][2:]))  # doubling
assert max(counts["grad"]) <= 2 * counts["grad"][1] and counts["grad"][-1] < counts["jvp"][-1] / 10
"""

CHECKS["12_custom_rules_and_checkpointing"] = """
import jax, jax.numpy as jnp
assert jnp.isnan(naive[-1])  # the chain rule through exp overflows
assert jnp.allclose(stable, jax.nn.sigmoid(xs))  # our engine called the custom rule
assert jnp.allclose(t_out, 2.0)
assert jnp.allclose(d2(0.3), s * (1 - s)) and jnp.allclose(d2(0.3), jax.grad(jax.grad(softplus))(0.3))
assert jnp.allclose(g, jnp.clip(20 * x, -1, 1)) and jnp.allclose(g, jax.grad(loss)(x))
assert float(clipped_t) == 5.0  # forward mode: the primal's own derivative (bwd clips)
try:
    T.linearize(clip_gradient, 1.0)[1](1.0)
except TypeError as e:
    assert "clip_gradient" in str(e)
else:
    raise AssertionError("linearize of a custom_vjp whose bwd is not linear must raise")
for a, b, c in zip(g_plain, g_remat, jax.grad(network)(ws, h0, False)):
    assert jnp.allclose(a, b) and jnp.allclose(a, c)
assert "remat2" in eqn_names and remat <= plain
"""

CHECKS["13_debugging_derivatives"] = """
import jax, jax.numpy as jnp
from transforms.testing import check_grads
try:
    check_grads(log1p_square, (jnp.array([0.5, 1.5]),), order=1)
except AssertionError:
    pass
else:
    raise AssertionError("check_grads must reject the wrong rule")
assert bool(jnp.isnan(T.grad(g)(x)[0])) and not bool(jnp.isnan(g(x)))
assert report.primitive in ("div", "mul", "rsqrt") and "sqrt" in report.rule, (report.primitive, report.rule)
assert "return jnp.sum(jnp.where(x > 0, jnp.sqrt(x), 0.0))" in report.source or ":" in report.source
assert jnp.allclose(T.grad(g_safe)(x), jnp.array([0.0, 0.5, 0.25]))
for name, fn in kinks.items():
    assert at_zero[name] == float(jax.grad(fn)(0.0)), name
assert at_zero["abs"] == 1.0 and at_zero["maximum(x, 0)"] == 0.5
assert jnp.array_equal(T.grad(jnp.max)(jnp.array([1.0, 3.0, 3.0])), jnp.array([0.0, 0.5, 0.5]))
"""

CHECKS["10_tape_for_higher_order"] = """
import jax, jax.numpy as jnp, numpy as np
import transforms as T
assert (float(dy), float(d2y), float(d3y)) == (12.0, 12.0, 6.0)
xg = grid.numpy().astype(np.float64)
fx = lambda x: jnp.sin(x) * jnp.exp(-x**2 / 4)
assert np.allclose(df.numpy(), jax.vmap(jax.grad(fx))(xg), atol=1e-5)
assert np.allclose(d2f.numpy(), jax.vmap(jax.grad(jax.grad(fx)))(xg), atol=1e-4)
Wn, xn, yn = W_layer, xb.numpy(), yb.numpy()
assert np.allclose(per_example.numpy(), Wn.T[None] * (1 - yn**2)[:, :, None], atol=1e-6)
for i in range(4):
    assert np.allclose(full.numpy()[i, :, i, :], per_example.numpy()[i], atol=1e-6)
    for j in range(4):
        if j != i:
            assert np.all(full.numpy()[i, :, j, :] == 0)
assert np.allclose(g.numpy(), [1.0, 8.0, 27.0]) and np.allclose(acc.jvp(g).numpy(), [3.0, 0.0, -27.0])
assert penalties[-1] < 0.2 * penalties[0]
assert abs(np.mean(final_norms) - 1.0) < abs(np.mean(initial_norms) - 1.0)
assert (float(dz_dx), float(dz_dy)) == (8.0, 0.0)
assert np.allclose(hessian_blocks, [[28 / 3, 4.0], [4.0, 2.0]], rtol=1e-5)
# the tape's gradient penalty against the functional API
params = [v.numpy() for v in critic_vars]
pts = points.numpy()
def penalty_fn(params):
    W1, b1, W2 = params
    D = lambda p: (jnp.tanh(p @ W1 + b1) @ W2)[0]
    grads = jax.vmap(T.grad(D))(pts)
    return jnp.mean((jnp.sqrt(jnp.sum(grads**2, axis=1)) - 1.0) ** 2)
with tf.GradientTape() as check_tape:
    check_penalty, _ = gradient_penalty()
ours = check_tape.gradient(check_penalty, critic_vars)
ref = jax.grad(penalty_fn)(params)
for a, r in zip(ours, ref):
    assert np.allclose(a.numpy(), r, rtol=1e-3, atol=1e-5)
"""

CHECKS["09_implicit_differentiation"] = """
import jax, jax.numpy as jnp, numpy as np
assert abs(newton_sqrt(a) - a**0.5) < 1e-14
assert abs(d1(a) - 0.5 * a**-0.5) < 1e-12 and abs(d2(a) + 0.25 * a**-1.5) < 1e-12
assert abs(d3(a) - 0.375 * a**-2.5) < 1e-12
# the ridge solution in closed form, differentiated by JAX as the oracle
def V_closed(log_lam):
    A = 2 * X_train.T @ X_train / len(y_train) + 2 * jnp.exp(log_lam) * jnp.eye(40)
    w = jnp.linalg.solve(A, 2 * X_train.T @ y_train / len(y_train))
    return jnp.mean((X_val @ w - y_val) ** 2)
dV_closed, d2V_closed = jax.jit(jax.grad(V_closed)), jax.jit(jax.grad(jax.grad(V_closed)))
assert jnp.allclose(V, jax.jit(jax.vmap(V_closed))(s_grid), rtol=1e-8)
assert jnp.allclose(dV, jax.vmap(dV_closed)(s_grid), rtol=1e-6, atol=1e-9)
assert jnp.allclose(d2V, jax.vmap(d2V_closed)(s_grid), rtol=1e-5, atol=1e-8)
assert abs(dV_closed(s_best)) < 1e-8 and d2V_closed(s_best) > 0
assert V_closed(s_best) <= jnp.min(V) + 1e-12
"""

CHECKS["05_hessian_spectrum"] = """
import jax, jax.numpy as jnp, numpy as np
H_trained = jax.jit(jax.hessian(loss))(theta_trained)
assert np.allclose(np.linalg.eigvalsh(H_trained), dense_eigs["trained"], atol=1e-9)
v = jnp.cos(jnp.arange(theta0.size, dtype=float))
assert jnp.allclose(hvp_at(theta_trained, v), H_trained @ v, atol=1e-9)
for name, ritz in (("initial", ritz_init), ("trained", ritz_trained)):
    eigs = dense_eigs[name]
    # extreme Ritz values match the extreme eigenvalues; all lie inside the spectrum
    assert abs(ritz[-1][-1] - eigs[-1]) < 1e-6 * abs(eigs[-1]), name
    assert abs(ritz[-1][-2] - eigs[-2]) < 1e-3 * abs(eigs[-1]), name
    assert ritz[-1][0] >= eigs[0] - 1e-9 and ritz[-1][-1] <= eigs[-1] + 1e-9
assert loss(theta_trained) < 0.05 * loss(theta0)
"""

CHECKS["06_lagrangian_mechanics"] = """
import jax, jax.numpy as jnp, numpy as np
def textbook(q, w):  # the double pendulum's accelerations, derived by hand (unit masses, lengths)
    t1, t2 = q; w1, w2 = w; d = t1 - t2
    den = 3 - jnp.cos(2 * d)
    a1 = (-3 * g * jnp.sin(t1) - g * jnp.sin(t1 - 2 * t2) - 2 * jnp.sin(d) * (w2**2 + w1**2 * jnp.cos(d))) / den
    a2 = 2 * jnp.sin(d) * (2 * w1**2 + 2 * g * jnp.cos(t1) + w2**2 * jnp.cos(d)) / den
    return jnp.array([a1, a2])
rng = np.random.default_rng(0)
for _ in range(5):
    qq, ww = rng.normal(size=2) * 2, rng.normal(size=2) * 2
    assert jnp.allclose(acceleration(qq, ww), textbook(qq, ww), rtol=1e-10, atol=1e-10)
mass = T.hessian(lagrangian, argnums=1)(q, q_dot)
assert jnp.allclose(mass, jnp.array([[2.0, jnp.cos(q[0] - q[1])], [jnp.cos(q[0] - q[1]), 1.0]]))
assert float(jnp.max(jnp.abs(energies / energy(q0, q_dot0) - 1))) < 1e-5
sep = np.linalg.norm(qs - qs_b, axis=1)
assert sep[100] < 1e-4 and sep[-1] > 1e-2
"""

CHECKS["07_physics_informed_fit"] = """
import jax, jax.numpy as jnp
p0 = init(jax.random.key(0))
ref = jnp.trace(jax.hessian(u, argnums=1)(p0, p_test))
assert jnp.allclose(laplacian(p0, p_test), ref, rtol=1e-10) and jnp.allclose(laplacian_fwd(p0, p_test), ref, rtol=1e-10)
assert jnp.allclose(jax.jit(jax.grad(residual_loss))(params)[0][0], jax.jit(T.grad(residual_loss))(params)[0][0], rtol=1e-8, atol=1e-10)
assert history[-1] < 1e-2 * history[0]
assert relative_error < 2e-2
assert jnp.allclose(u(params, jnp.array([0.0, 0.4])), 0.0) and jnp.allclose(u(params, jnp.array([0.7, 1.0])), 0.0)
"""

CHECKS["08_maml_sine_regression"] = """
import jax, jax.numpy as jnp
batch = make_batch(jax.random.key(3))
def maml_ref(params, task_batch):
    x_tr, y_tr, x_te, y_te = task_batch
    def one(x_tr, y_tr, x_te, y_te):
        g = jax.grad(mse)(params, x_tr, y_tr)
        adapted = jax.tree_util.tree_map(lambda p, gp: p - alpha * gp, params, g)
        return mse(adapted, x_te, y_te)
    return jnp.mean(jax.vmap(one)(x_tr, y_tr, x_te, y_te))
ours = jax.jit(T.grad(maml_loss))(trained["MAML"], batch)
ref = jax.jit(jax.grad(maml_ref))(trained["MAML"], batch)
for a, r in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
    assert jnp.allclose(a, r, rtol=1e-3, atol=1e-5)
fo = jax.jit(T.grad(lambda p, b: maml_loss(p, b, first_order=True)))(trained["MAML"], batch)
assert any(not jnp.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(fo)))
maml, base = curves["MAML"], curves["pretrained baseline"]
assert maml[1] < maml[0] and maml[10] < maml[1]  # adapting helps, and more steps help more
assert maml[1] < 0.5 * base[1] and maml[10] < base[10]  # and MAML adapts better than the baseline
"""

CHECKS["14_loops_and_solvers"] = """
import jax, jax.numpy as jnp, numpy as np
assert abs(float(y_end) - np.exp(-2 * k)) < 1e-5 and int(steps) > 10
assert abs(float(dy_dk) - float(fd)) < 1e-6
assert abs(float(dy_dk) + 2 * np.exp(-2 * k)) < 1e-3  # the solver's own error
assert abs(float(d2y_dk2) - float(fd2)) < 1e-5 and abs(float(d2y_dk2) - 4 * np.exp(-2 * k)) < 1e-2
assert len(set(np.asarray(steps_per_k).tolist())) > 1  # every example took its own trip count
np.testing.assert_allclose(per_example[::7], [grad_fn(kk) for kk in ks[::7]], rtol=1e-12)  # vmap = one at a time
np.testing.assert_allclose(per_example, -2 * np.exp(-2 * np.asarray(ks)), atol=1e-3)
# recompute_steps: n(n-1)/2 with one snapshot, about (n/2) log2 n with enough of them
assert all(recompute_steps(n, 1) == n * (n - 1) // 2 for n in (1, 2, 10, 1000))
for n in (10, 1_000, 100_000):
    assert recompute_steps(n, 16) <= n * (0.5 * np.log2(n) + 1)
    assert all(recompute_steps(n, a) >= recompute_steps(n, b) for a, b in zip(snapshot_counts, snapshot_counts[1:]))
assert recompute_steps(100_000, 16) / 100_000 < 9
np.testing.assert_allclose(loop_grads, -2.0 * (1 - 0.01 * k) ** 199, rtol=1e-12)
np.testing.assert_allclose(hess, hess.T, rtol=1e-6, atol=1e-7)
np.testing.assert_allclose(hess, fd_hess, rtol=1e-6, atol=1e-7)
s = jax.nn.sigmoid(x)
np.testing.assert_allclose(tangent_out, s)
np.testing.assert_allclose(second, s * (1 - s))
assert bool(jnp.all(jnp.isfinite(second)))
"""
