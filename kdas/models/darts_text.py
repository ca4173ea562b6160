"""The text form of a DARTS genotype: `Genotype(normal=[('sep_conv_3x3', 0), ...], ...)`.

Genotypes published with DARTS and its successors are Python source (a namedtuple call), often
with `range(2, 6)` for the concat lists. `parse_darts_genotype` reads that text into plain field
values without running it, so `load_genotype` can accept it next to kdas' JSON.
"""

from __future__ import annotations

import ast
from typing import Any

from kdas.errors import KdasError

# DARTS' `Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")`.
DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def _darts_value(node: ast.expr, field: str, where: str) -> Any:
    """A literal, or `range(a[, b])` with int literals (DARTS writes concat that way)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        try:
            bounds = [ast.literal_eval(arg) for arg in node.args]
        except ValueError:
            bounds = []
        if node.keywords or not 1 <= len(bounds) <= 2 or not all(type(b) is int for b in bounds):
            raise KdasError(f"{where}: {field}: range(...) needs one or two integer literals")
        if any(abs(b) > 1000 for b in bounds):
            raise KdasError(f"{where}: {field}: range bounds out of any sensible size")
        return list(range(*bounds))
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise KdasError(f"{where}: {field} is not a literal: {ast.unparse(node)}") from None
    return (
        [list(v) if isinstance(v, tuple) else v for v in value]
        if isinstance(value, list | tuple)
        else value
    )


def parse_darts_genotype(text: str, where: str = "genotype") -> dict[str, Any]:
    """Read DARTS' `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)`
    (optionally `NAME = Genotype(...)`) into its four fields as plain lists, without evaluating
    any code: the text is parsed to a syntax tree and only literals and `range` are read from it.
    The ops and inputs are not checked here; `kdas.models.genotype.load_genotype` validates."""
    try:
        tree = ast.parse(text.strip(), mode="exec")
    except SyntaxError as exc:
        raise KdasError(f"{where}: not a Genotype(...) expression ({exc.msg})") from None
    body = tree.body
    statement = body[0] if len(body) == 1 else None
    call = statement.value if isinstance(statement, ast.Expr | ast.Assign) else None
    func = getattr(call, "func", None)
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if not isinstance(call, ast.Call) or name != "Genotype":
        raise KdasError(
            f"{where}: expected one Genotype(normal=..., normal_concat=..., ...) expression"
        )
    if len(call.args) > len(DARTS_FIELDS):
        raise KdasError(f"{where}: Genotype(...) takes at most {len(DARTS_FIELDS)} arguments")
    fields: dict[str, ast.expr] = dict(zip(DARTS_FIELDS, call.args, strict=False))
    for keyword in call.keywords:
        if keyword.arg not in DARTS_FIELDS:
            known = ", ".join(DARTS_FIELDS)
            raise KdasError(f"{where}: unknown Genotype field {keyword.arg!r} (known: {known})")
        if keyword.arg in fields:
            raise KdasError(f"{where}: Genotype field {keyword.arg!r} given twice")
        fields[keyword.arg] = keyword.value
    missing = [f for f in DARTS_FIELDS if f not in fields]
    if missing:
        raise KdasError(f"{where}: Genotype(...) is missing {missing[0]!r}")
    return {f: _darts_value(fields[f], f, where) for f in DARTS_FIELDS}
