"""Source-to-source conversion of a Python function's control flow into calls of `runtime`.

Two passes over the function's AST:

1. *Lowering* removes the statements that jump: `return` inside `if`/loops becomes
   `do_return = True; retval = value`, `break` and `continue` set flags, and the statements after
   one that may have set a flag run under `if not flag:`. A loop's test also checks its flags.
   An `if` whose one branch always returns gets the statements after it in its other branch, so
   that both branches define the return value (as TF's AutoGraph does).
2. *Functionalising* turns each `if`, `while` and `for` (innermost first) into nested functions
   for its blocks, plus `get_state`/`set_state` functions over the variables the blocks assign,
   and one call of `runtime.if_stmt` / `while_stmt` / `for_stmt`. `and`, `or`, `not`, conditional
   expressions and `print` calls become runtime calls too.

Every local variable is pre-bound to `runtime.Undefined(name)` at the top of the function, so the
nested functions can declare it `nonlocal`. The converted function is built with the original
function's globals and closure cells, so it reads (and writes) the same outer variables.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap
import types
import weakref

from . import runtime
from .syntax import (
    _AG,
    _always_returns,
    _assign,
    _assigned,
    _attr,
    _call,
    _const,
    _declared,
    _def,
    _has,
    _lambda,
    _name,
    _not_any,
    _walk_scope,
)


class ConversionError(ValueError):
    """The function could not be converted (no source, or a construct the converter does not
    handle)."""


# Builtins called as they are: nothing to convert, and some (locals, super, vars) need the
# caller's frame. `range` stays visible to the `for` conversion.
_CALLED_AS_IS = frozenset(
    "range len isinstance issubclass super locals globals vars eval exec dir type int float "
    "bool complex str bytes list tuple dict set frozenset zip enumerate min max abs sum any all "
    "map filter sorted reversed hasattr getattr setattr delattr id iter next repr round divmod "
    "callable hash object print set_loop_options".split()
)
_RET, _DO_RET = "ag__retval", "ag__do_return"
_FN = "ag__converted"

# --------------------------------------------------------------------------------------------------
# Pass 1: return / break / continue become flags
# --------------------------------------------------------------------------------------------------


class _Loop:
    def __init__(self, n):
        self.brk, self.cont = f"ag__break_{n}", f"ag__continue_{n}"
        self.uses_break = self.uses_continue = False


class _Lowering:
    def __init__(self, counter, lower_returns):
        self.counter = counter
        self.lower_returns = lower_returns

    def block(self, stmts, loop):
        out, flags = [], set()
        stmts = list(stmts)
        for i, s in enumerate(stmts):
            rest = stmts[i + 1 :]
            if isinstance(s, ast.If) and self.lower_returns:
                body_ret, else_ret = _always_returns(s.body), _always_returns(s.orelse)
                if body_ret and not else_ret:
                    s = ast.copy_location(ast.If(s.test, s.body, s.orelse + rest), s)
                    rest = []
                elif else_ret and not body_ret:
                    s = ast.copy_location(ast.If(s.test, s.body + rest, s.orelse), s)
                    rest = []
                elif body_ret and else_ret:
                    rest = []
            new, f = self.stmt(s, loop)
            out.extend(new)
            if f:
                flags |= f
                if rest:
                    rest_new, rest_flags = self.block(rest, loop)
                    flags |= rest_flags
                    if rest_new:
                        out.append(ast.copy_location(ast.If(_not_any(f), rest_new, []), rest[0]))
                break
        return out, flags

    def stmt(self, s, loop):
        loc = functools.partial(ast.copy_location, old_node=s)
        if isinstance(s, ast.Return) and self.lower_returns:
            value = s.value if s.value is not None else _const(None)
            return [loc(_assign(_RET, value)), loc(_assign(_DO_RET, _const(True)))], {_DO_RET}
        if isinstance(s, ast.Break):
            if loop is None:  # pragma: no cover  (a SyntaxError already)
                return [s], set()
            loop.uses_break = True
            return [loc(_assign(loop.brk, _const(True)))], {loop.brk}
        if isinstance(s, ast.Continue):
            if loop is None:  # pragma: no cover
                return [s], set()
            loop.uses_continue = True
            return [loc(_assign(loop.cont, _const(True)))], {loop.cont}
        if isinstance(s, ast.If):
            body, f1 = self.block(s.body, loop)
            orelse, f2 = self.block(s.orelse, loop)
            return [loc(ast.If(s.test, body or [ast.Pass()], orelse))], f1 | f2
        if isinstance(s, ast.While | ast.For):
            return self.loop(s, loop)
        if isinstance(s, ast.With):
            body, f = self.block(s.body, loop)
            return [loc(ast.With(s.items, body or [ast.Pass()]))], f
        if isinstance(s, ast.Try):
            body, f = self.block(s.body, loop)
            handlers = []
            for h in s.handlers:
                hb, fh = self.block(h.body, loop)
                f |= fh
                handlers.append(
                    ast.copy_location(ast.ExceptHandler(h.type, h.name, hb or [ast.Pass()]), h)
                )
            orelse, fo = self.block(s.orelse, loop)
            final, ff = self.block(s.finalbody, loop)
            return [loc(ast.Try(body or [ast.Pass()], handlers, orelse, final))], f | fo | ff
        return [s], set()

    def loop(self, s, outer):
        inner = _Loop(next(self.counter))
        options, body_stmts = _loop_options(s.body)
        body, fb = self.block(body_stmts, inner)
        out_flags = fb - {inner.brk, inner.cont}
        stops = set()
        if inner.uses_break:
            stops.add(inner.brk)
        if _DO_RET in fb:
            stops.add(_DO_RET)
        if inner.uses_continue:
            body = [ast.copy_location(_assign(inner.cont, _const(False)), s), *body]
        pre = [ast.copy_location(_assign(inner.brk, _const(False)), s)] if inner.uses_break else []
        if isinstance(s, ast.While):
            test = (
                s.test if not stops else ast.BoolOp(op=ast.And(), values=[_not_any(stops), s.test])
            )
            new = ast.copy_location(ast.While(test, body or [ast.Pass()], []), s)
        else:
            new = ast.copy_location(ast.For(s.target, s.iter, body or [ast.Pass()], []), s)
            new.ag_extra_test = _not_any(stops) if stops else None
        new.ag_options = options
        new.ag_has_return = _DO_RET in fb
        after = []
        if s.orelse:
            orelse, fo = self.block(s.orelse, outer)
            out_flags |= fo
            after = (
                orelse
                if not stops
                else [ast.copy_location(ast.If(_not_any(stops), orelse, []), s.orelse[0])]
            )
        return [*pre, new, *after], out_flags


def _loop_options(body):
    """`set_loop_options(...)` calls at the top of a loop body: a dict of their keywords."""
    options = []
    while body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Call):
        fn = body[0].value.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
        if name != "set_loop_options":
            break
        options.extend(body[0].value.keywords)
        body = body[1:]
    if not options:
        return None, body
    return ast.Dict(keys=[_const(k.arg) for k in options], values=[k.value for k in options]), body


# --------------------------------------------------------------------------------------------------
# Pass 2: control flow becomes runtime calls
# --------------------------------------------------------------------------------------------------


class _Functionalize(ast.NodeTransformer):
    def __init__(self, counter, scope_names, live_after, filename, convert_print):
        self.counter = counter
        self.scope_names = scope_names
        self.live_after = live_after
        self.filename = filename
        self.convert_print = convert_print

    # Nested user functions, classes and lambdas keep their own semantics.
    def visit_FunctionDef(self, node):
        return node

    visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = visit_FunctionDef

    def _where(self, node):
        return _const(f"{self.filename}:{node.lineno}")

    def _state_fns(self, n, names):
        nonlocal_ = [ast.Nonlocal(names=list(names))] if names else []
        getter = _def(
            f"ag__get_state_{n}", [], [ast.Return(ast.Tuple([_name(x) for x in names], ast.Load()))]
        )
        target = ast.Tuple([_name(x, store=True) for x in names], ast.Store())
        setter = _def(
            f"ag__set_state_{n}",
            ["ag__values"],
            [*nonlocal_, ast.Assign(targets=[target], value=_name("ag__values"))]
            if names
            else [ast.Pass()],
        )
        return nonlocal_, getter, setter

    def _modified(self, stmts):
        return sorted(x for x in _assigned(stmts) if x in self.scope_names)

    def _live(self, node, names):
        live = self.live_after.get(id(node), set())
        return ast.Tuple([_const(x.startswith("ag__") or x in live) for x in names], ast.Load())

    def _names(self, names):
        return ast.Tuple([_const(x) for x in names], ast.Load())

    def visit_If(self, node):
        names = self._modified(node.body + node.orelse)
        live = self._live(node, names)
        self.generic_visit(node)
        n = next(self.counter)
        nonlocal_, getter, setter = self._state_fns(n, names)
        body = _def(f"ag__if_body_{n}", [], [*nonlocal_, *node.body])
        orelse = _def(f"ag__else_body_{n}", [], [*nonlocal_, *node.orelse])
        call = ast.Expr(
            _call(
                _attr("if_stmt"),
                node.test,
                _name(body.name),
                _name(orelse.name),
                _name(getter.name),
                _name(setter.name),
                self._names(names),
                live,
                self._where(node),
            )
        )
        return [_at(s, node) for s in (body, orelse, getter, setter, call)]

    def visit_While(self, node):
        names = self._modified(node.body)
        live = self._live(node, names)
        options = getattr(node, "ag_options", None)
        has_return = getattr(node, "ag_has_return", False)
        self.generic_visit(node)
        n = next(self.counter)
        nonlocal_, getter, setter = self._state_fns(n, names)
        test = _def(f"ag__loop_test_{n}", [], [ast.Return(node.test)])
        body = _def(f"ag__loop_body_{n}", [], [*nonlocal_, *node.body])
        call = ast.Expr(
            _call(
                _attr("while_stmt"),
                _name(test.name),
                _name(body.name),
                _name(getter.name),
                _name(setter.name),
                self._names(names),
                live,
                options or _const(None),
                self._where(node),
                _const(has_return),
            )
        )
        return [_at(s, node) for s in (test, body, getter, setter, call)]

    def visit_For(self, node):
        names = self._modified([node.target, *node.body])
        live = self._live(node, names)
        options = getattr(node, "ag_options", None)
        has_return = getattr(node, "ag_has_return", False)
        extra = getattr(node, "ag_extra_test", None)
        self.generic_visit(node)
        if extra is not None:
            extra = self.visit(extra)
        n = next(self.counter)
        nonlocal_, getter, setter = self._state_fns(n, names)
        bind = ast.Assign(targets=[node.target], value=_name("ag__item"))
        body = _def(f"ag__loop_body_{n}", ["ag__item"], [*nonlocal_, bind, *node.body])
        out = [body, getter, setter]
        if extra is not None:
            test = _def(f"ag__extra_test_{n}", [], [ast.Return(extra)])
            out.insert(0, test)
            extra_ref = _name(test.name)
        else:
            extra_ref = _const(None)
        iterable = node.iter
        if isinstance(iterable, ast.Call) and _callee_name(iterable.func) == "range":
            iterable = ast.Call(
                func=_attr("range_"),
                args=[iterable.func, *iterable.args],
                keywords=iterable.keywords,
            )
        out.append(
            ast.Expr(
                _call(
                    _attr("for_stmt"),
                    iterable,
                    extra_ref,
                    _name(body.name),
                    _name(getter.name),
                    _name(setter.name),
                    self._names(names),
                    live,
                    options or _const(None),
                    self._where(node),
                    _const(has_return),
                )
            )
        )
        return [_at(s, node) for s in out]

    # Expressions
    def visit_BoolOp(self, node):
        self.generic_visit(node)
        fn = "and_" if isinstance(node.op, ast.And) else "or_"
        return ast.copy_location(_call(_attr(fn), *[_lambda(v) for v in node.values]), node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(_call(_attr("not_"), node.operand), node)
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        return ast.copy_location(
            _call(
                _attr("if_exp"),
                node.test,
                _lambda(node.body),
                _lambda(node.orelse),
                self._where(node),
            ),
            node,
        )

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        if self.convert_print and isinstance(func, ast.Name) and func.id == "print":
            return ast.copy_location(
                ast.Call(func=_attr("print_"), args=[func, *node.args], keywords=node.keywords),
                node,
            )
        if (
            (isinstance(func, ast.Name) and func.id in _CALLED_AS_IS)
            or _callee_name(func) == "range"  # builtins.range or tf.range: see visit_For
            or (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == _AG
            )
        ):
            return node
        # The callee is converted too when it is user code (calls.py decides, per call).
        node.func = ast.copy_location(
            _call(_attr("callee"), func, _const(self.convert_print)), func
        )
        return node


def _at(new, node):
    """Give generated code the first line of the statement it replaces (so a traceback through
    the runtime call shows `if x > 0:`, not the whole block); original nodes keep theirs."""
    for n in ast.walk(new):
        if isinstance(n, ast.stmt | ast.expr) and getattr(n, "lineno", None) is None:
            n.lineno = n.end_lineno = node.lineno
            n.col_offset, n.end_col_offset = node.col_offset, node.col_offset
    return new


def _callee_name(fn):
    if isinstance(fn, ast.Name):
        return fn.id
    if isinstance(fn, ast.Attribute):
        return fn.attr
    return None


def _liveness(body):
    """For each `if`/`while`/`for` node: the names read after it, or anywhere in a loop around
    it (conservative: a read anywhere later counts)."""
    order: list = []  # (index, name) of every read, in source order
    spans: dict = {}  # id(node) -> (start, end, enclosing loop spans)
    counter = itertools.count()

    def visit(node, loops):
        start = next(counter)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            order.append((start, node.id))
        inner = loops
        if isinstance(node, ast.While | ast.For):
            inner = [*loops, node]
        for child in ast.iter_child_nodes(node):
            visit(child, inner)
        end = next(counter)
        if isinstance(node, ast.If | ast.While | ast.For):
            spans[id(node)] = (start, end, loops)
        if isinstance(node, ast.While | ast.For):
            spans[("loop", id(node))] = (start, end)

    for s in body:
        visit(s, [])
    live = {}
    for key, value in spans.items():
        if not isinstance(key, int):
            continue
        start, end, loops = value
        names = {n for i, n in order if i > end}
        for lp in loops:
            ls, le = spans[("loop", id(lp))]
            names |= {n for i, n in order if ls <= i <= le}
        live[key] = names
    return live


# --------------------------------------------------------------------------------------------------
# Building the converted function
# --------------------------------------------------------------------------------------------------

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def convert(fn, *, convert_print=True):
    """The function `fn` with its control flow converted (see the module docstring)."""
    if isinstance(fn, types.MethodType):
        return types.MethodType(convert(fn.__func__, convert_print=convert_print), fn.__self__)
    if isinstance(fn, functools.partial):
        return functools.partial(
            convert(fn.func, convert_print=convert_print), *fn.args, **fn.keywords
        )
    if not isinstance(fn, types.FunctionType):
        raise ConversionError(
            f"autograph converts Python functions and methods; got {type(fn).__name__} "
            f"{fn!r}. Convert the function it calls instead."
        )
    if getattr(fn, "__autograph_converted__", False):
        return fn
    key = convert_print
    cached = _CACHE.get(fn)
    if cached is not None and key in cached:
        return cached[key]
    code = _converted_code(fn.__code__, convert_print)
    closure = None
    if code.co_freevars:
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
        closure = tuple(
            types.CellType(runtime) if name == _AG else cells[name] for name in code.co_freevars
        )
    new = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = fn.__kwdefaults__
    functools.update_wrapper(new, fn)
    new.__autograph_converted__ = True
    _CACHE.setdefault(fn, {})[key] = new
    return new


@functools.lru_cache(maxsize=512)
def _converted_code(code, convert_print):
    try:
        lines, first = inspect.getsourcelines(code)
    except (OSError, TypeError) as e:
        raise ConversionError(
            f"autograph cannot convert {code.co_name!r}: its source code is not available "
            f"({e}). Define it in a file (not in an interactive prompt or exec'd string)."
        ) from None
    source = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        raise ConversionError(
            f"autograph cannot convert {code.co_name!r}: its source could not be parsed on its "
            "own (a lambda, or a function defined inside an expression). Use a def."
        ) from None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef) or code.co_name == "<lambda>":
        raise ConversionError(
            f"autograph cannot convert {code.co_name!r}: only functions defined with `def` are "
            "converted (lambdas are not)."
        )
    ast.increment_lineno(tree, first - 1)
    node.decorator_list = []
    _check_supported(node)

    params = {a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs}
    params |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None}
    globals_ = _declared(node.body, ast.Global)
    nonlocals = _declared(node.body, ast.Nonlocal)

    counter = itertools.count()
    lower_returns = any(
        _has(s.body + getattr(s, "orelse", []), ast.Return)
        for s in _walk_scope(node.body)
        if isinstance(s, ast.If | ast.While | ast.For)
    )
    body, _ = _Lowering(counter, lower_returns).block(node.body, None)
    locals_ = (_assigned(body) | params) - globals_ - nonlocals
    scope_names = locals_ | nonlocals

    live = _liveness(body)
    fz = _Functionalize(counter, scope_names, live, code.co_filename, convert_print)
    new_body = []
    for s in body:
        out = fz.visit(s)
        new_body.extend(out if isinstance(out, list) else [out])

    prebind = [
        _assign(
            x,
            _call(_attr("UndefinedReturn"))
            if x == _RET
            else _const(False)
            if x == _DO_RET
            else _call(_attr("Undefined"), _const(x)),
        )
        for x in sorted(locals_ - params)
    ]
    docstring = []
    if (
        new_body
        and isinstance(new_body[0], ast.Expr)
        and isinstance(new_body[0].value, ast.Constant)
        and isinstance(new_body[0].value.value, str)
    ):
        docstring = [new_body.pop(0)]
    declarations = [s for s in new_body if isinstance(s, ast.Global | ast.Nonlocal)]
    new_body = [s for s in new_body if not isinstance(s, ast.Global | ast.Nonlocal)]
    tail = [ast.Return(_call(_attr("ret"), _name(_RET)))] if lower_returns else []
    for s in prebind:
        ast.copy_location(s, node)
    node.body = [*docstring, *declarations, *prebind, *new_body, *tail]
    for s in tail:
        ast.copy_location(s, node)

    # Defined in the factory under another name: a function that calls itself by its global
    # name must keep reading the global, not a local of the factory.
    node.name = _FN
    factory = _def("ag__factory", [_AG, *code.co_freevars], [node, ast.Return(_name(_FN))])
    ast.copy_location(factory, node)
    module = ast.Module(body=[factory], type_ignores=[])
    ast.fix_missing_locations(module)
    compiled = compile(module, code.co_filename, "exec")
    factory_code = next(c for c in compiled.co_consts if isinstance(c, types.CodeType))
    new = next(
        c for c in factory_code.co_consts if isinstance(c, types.CodeType) and c.co_name == _FN
    )
    return new.replace(co_name=code.co_name, co_qualname=code.co_qualname)


def _check_supported(node):
    for n in _walk_scope(node.body):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "super"
            and not n.args
        ):
            raise ConversionError(
                f"autograph cannot convert {node.name!r}: `super()` without arguments needs the "
                "class cell of the original method; write super(Class, self)."
            )
        if isinstance(n, ast.Yield | ast.YieldFrom):
            raise ConversionError(
                f"autograph cannot convert {node.name!r}: generators (`yield`) are not converted."
            )
        if isinstance(n, ast.AsyncFor | ast.AsyncWith | ast.Await):
            raise ConversionError(
                f"autograph cannot convert {node.name!r}: async code is not converted."
            )
