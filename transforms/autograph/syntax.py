"""The AST helpers of the converter: small node builders, and what a function's scope assigns,
declares and loads."""

from __future__ import annotations

import ast

_AG = "ag__"  # the name converted code calls the runtime by

# --------------------------------------------------------------------------------------------------
# Small AST builders
# --------------------------------------------------------------------------------------------------


def _name(id_, store=False):
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _attr(name):
    return ast.Attribute(value=_name(_AG), attr=name, ctx=ast.Load())


def _call(fn, *args, **kwargs):
    return ast.Call(
        func=fn, args=list(args), keywords=[ast.keyword(arg=k, value=v) for k, v in kwargs.items()]
    )


def _assign(name, value):
    return ast.Assign(targets=[_name(name, store=True)], value=value)


def _const(v):
    return ast.Constant(value=v)


def _def(name, params, body):
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(arg=p) for p in params],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )
    return ast.FunctionDef(
        name=name, args=args, body=body or [ast.Pass()], decorator_list=[], returns=None
    )


def _not_any(flags):
    nots = [ast.UnaryOp(op=ast.Not(), operand=_name(f)) for f in sorted(flags)]
    return nots[0] if len(nots) == 1 else ast.BoolOp(op=ast.And(), values=nots)


def _lambda(body):
    return ast.Lambda(
        args=ast.arguments(
            posonlyargs=[],
            args=[],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        ),
        body=body,
    )


# --------------------------------------------------------------------------------------------------
# Scope analysis
# --------------------------------------------------------------------------------------------------

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _walk_scope(nodes):
    """The nodes of this scope: not inside nested functions, classes, lambdas or comprehensions
    (those are yielded themselves, not entered)."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES + _COMPREHENSIONS):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _assigned(nodes) -> set[str]:
    """Names these statements bind in the enclosing function's scope."""
    out = set()
    for node in _walk_scope(nodes):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            out.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for a in node.names:
                out.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
    return out


def _declared(nodes, kind) -> set[str]:
    return {n for node in _walk_scope(nodes) if isinstance(node, kind) for n in node.names}


def _loads(nodes):
    return [
        n.id
        for node in nodes
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    ]


def _has(nodes, kinds, stop=()):
    """Whether a node of `kinds` occurs in this scope, not looking inside `stop` nodes."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, kinds):
            return True
        if isinstance(node, _SCOPES + _COMPREHENSIONS + stop):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def _always_returns(stmts):
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, ast.Return):
        return True
    if isinstance(last, ast.If):
        return _always_returns(last.body) and _always_returns(last.orelse)
    return False
