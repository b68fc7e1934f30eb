"""The engine rule: nothing under transforms/ uses JAX's automatic differentiation."""

import pathlib
import re

FORBIDDEN = re.compile(
    r"jax\.(grad|value_and_grad|jvp|vjp|linearize|jacfwd|jacrev|jacobian|hessian|"
    r"linear_transpose)\b|interpreters\.ad\b|interpreters import ad\b|primitive_jvps|"
    r"primitive_transposes|experimental\.jet|experimental import jet|"
    r"from jax import [^\n]*\b(grad|value_and_grad|jvp|vjp|linearize|jacfwd|jacrev|hessian)\b"
)

ROOT = pathlib.Path(__file__).resolve().parents[1] / "transforms"

# The one module that may read JAX's rule tables: for primitives JAX does not define, it applies
# the rules their authors registered there (never for JAX's own: tests/test_foreign.py).
FOREIGN_RULES = ROOT / "rules" / "foreign.py"
FOREIGN_ALLOWED = re.compile(
    r"interpreters import ad\b|interpreters\.ad\b|primitive_jvps|primitive_transposes"
)


def test_no_jax_autodiff_in_engine():
    hits = []
    for path in sorted(ROOT.rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if path == FOREIGN_RULES:
                code = FOREIGN_ALLOWED.sub("", code)
            if FORBIDDEN.search(code):
                hits.append(f"{path.relative_to(ROOT.parent)}:{lineno}: {line.strip()}")
    assert not hits, "JAX autodiff used by the engine:\n" + "\n".join(hits)


def test_forbidden_pattern_catches_uses():
    for bad in [
        "jax.grad(f)",
        "from jax import grad",
        "from jax._src.interpreters import ad",
        "ad.primitive_jvps[p]",
        "jax.linear_transpose(f, x)",
    ]:
        assert FORBIDDEN.search(bad), bad
    for ok in ["transforms.grad(f)", "jax.jit(f)", "jax.make_jaxpr(f)"]:
        assert not FORBIDDEN.search(ok), ok


def test_private_jax_modules_behind_one_module():
    # A new JAX release should be a change in one file: every `jax._src` use lives in _jax.py.
    hits = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "_jax.py" and path.parent == ROOT:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "jax._src" in line.split("#", 1)[0]:
                hits.append(f"{path.relative_to(ROOT.parent)}:{lineno}: {line.strip()}")
    assert not hits, "private JAX modules used outside transforms/_jax.py:\n" + "\n".join(hits)


def test_only_the_foreign_rules_module_reads_jax_rule_tables():
    assert FOREIGN_RULES.exists()
    readers = [
        path.relative_to(ROOT.parent)
        for path in sorted(ROOT.rglob("*.py"))
        if re.search(r"primitive_jvps|primitive_transposes", path.read_text())
    ]
    assert readers == [FOREIGN_RULES.relative_to(ROOT.parent)]
    # Even there, JAX's autodiff itself stays forbidden.
    code = FOREIGN_ALLOWED.sub("", FOREIGN_RULES.read_text())
    assert not FORBIDDEN.search(code)
