"""Genotypes: a searched architecture as plain, validated data.

A genotype lists, for each of the two cell types, two `(op, input)` pairs per intermediate node
(pair k feeds node k // 2; input 0 and 1 are the cell's two inputs, input j >= 2 is node j - 2)
and the states whose concatenation is the cell's output. `derive_genotype` turns α into one;
`save_genotype` / `load_genotype` move it through JSON, validated against the op registry so a
wrong entry is named instead of failing deep inside the network builder.

This module needs no torch: α may be tensors, arrays or nested lists.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.models.ops import NONE, OPS, PRIMITIVES, SKIP, known_ops
from kdas.utils.atomic import atomic_write_json

GENOTYPE_FORMAT = "kdas-genotype"
GENOTYPE_VERSION = 1
CELL_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


@dataclasses.dataclass(frozen=True)
class Genotype:
    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        # Accept lists (JSON, DARTS code) but store tuples so genotypes compare and hash.
        for name in ("normal", "reduce"):
            pairs = tuple((str(op), int(j)) for op, j in getattr(self, name))
            object.__setattr__(self, name, pairs)
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))

    @property
    def steps(self) -> int:
        """Intermediate nodes per cell."""
        return len(self.normal) // 2


def num_edges(steps: int) -> int:
    """Edges of a search cell: node i has one from each of the 2 + i earlier states."""
    return sum(2 + i for i in range(steps))


def edge_list(steps: int) -> list[tuple[int, int]]:
    """`(node, input)` of each search-cell edge, in α's row order (node-major, input ascending)."""
    return [(node, j) for node in range(steps) for j in range(2 + node)]


def count_skips(genotype: Genotype, cell: str = "normal") -> int:
    """Skip connections in one cell: DARTS collapse shows up as this count growing."""
    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    return sum(op == SKIP for op, _ in getattr(genotype, cell))


# ---------------------------------------------------------------- derivation


def _softmax_rows(alpha: Any, rows: int, columns: int, name: str) -> np.ndarray:
    if hasattr(alpha, "detach"):  # a torch tensor, without importing torch here
        alpha = alpha.detach().cpu().double().numpy()
    logits = np.asarray(alpha, dtype=np.float64)
    if logits.shape != (rows, columns):
        raise KdasError(
            f"{name}: expected shape ({rows}, {columns}) (edges x primitives), got {logits.shape}"
        )
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _best_op(row: np.ndarray, primitives: Sequence[str], exclude: set[str]) -> tuple[int, float]:
    """Column and weight of the strongest op not in `exclude`; ties go to the earlier primitive."""
    allowed = [k for k, name in enumerate(primitives) if name not in exclude]
    if not allowed:
        raise KdasError(
            f"no op to choose outside {sorted(exclude)} in primitives {list(primitives)}"
        )
    best = max(allowed, key=lambda k: (row[k], -k))
    return best, float(row[best])


def _derive_cell(
    weights: np.ndarray, primitives: Sequence[str], steps: int
) -> tuple[list[tuple[str, int]], list[int]]:
    """Pairs of one cell and, for each pair, the α row (edge) it came from."""
    pairs: list[tuple[str, int]] = []
    rows: list[int] = []
    start = 0
    for node in range(steps):
        inputs = range(2 + node)
        strength = {j: _best_op(weights[start + j], primitives, {NONE})[1] for j in inputs}
        # Two strongest inputs; a tie goes to the lower input index. Stored by input index.
        chosen = sorted(sorted(inputs, key=lambda j: (-strength[j], j))[:2])
        for j in chosen:
            column, _ = _best_op(weights[start + j], primitives, {NONE})
            pairs.append((primitives[column], j))
            rows.append(start + j)
        start += 2 + node
    return pairs, rows


def _cap_skips(
    pairs: list[tuple[str, int]],
    rows: list[int],
    weights: np.ndarray,
    primitives: Sequence[str],
    max_skips: int,
) -> list[tuple[str, int]]:
    """Replace the weakest skips until at most `max_skips` remain.

    The rule: rank the pairs whose op is `skip_connect` by their skip weight (softmax), weakest
    first, ties by position in the cell (earlier first); each of the surplus weakest keeps its
    input and takes its edge's strongest op other than `none` and `skip_connect`. Which inputs
    each node uses is not re-decided, so the topology stays the one α chose.
    """
    if SKIP not in primitives:
        return pairs
    skip_column = list(primitives).index(SKIP)
    skip_positions = [pos for pos, (op, _) in enumerate(pairs) if op == SKIP]
    surplus = len(skip_positions) - max_skips
    if surplus <= 0:
        return pairs
    weakest = sorted(skip_positions, key=lambda pos: (weights[rows[pos], skip_column], pos))
    capped = list(pairs)
    for pos in weakest[:surplus]:
        column, _ = _best_op(weights[rows[pos]], primitives, {NONE, SKIP})
        capped[pos] = (primitives[column], pairs[pos][1])
    return capped


def derive_genotype(
    alpha_normal: Any,
    alpha_reduce: Any,
    primitives: Sequence[str] = PRIMITIVES,
    steps: int = 4,
    max_skip_normal: int | None = None,
    multiplier: int | None = None,
) -> Genotype:
    """The discrete architecture α points to (DARTS rule).

    Softmax over ops per edge; an edge's strength is its largest non-`none` weight; each node
    keeps its two strongest incoming edges (tie: lower input index) and on each the strongest
    non-`none` op (tie: earlier in `primitives`). Pairs are stored by ascending input index, so
    equal architectures give equal genotypes. `max_skip_normal` caps skip connections in the
    normal cell (see `_cap_skips`). The output concatenates the last `multiplier` nodes (all of
    them by default).
    """
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in OPS]
    if unknown:
        raise KdasError(f"primitives: {unknown[0]!r} is not a known op (known: {known_ops()})")
    if max_skip_normal is not None and max_skip_normal < 0:
        raise KdasError(f"max_skip_normal must be >= 0, got {max_skip_normal}")
    multiplier = steps if multiplier is None else multiplier
    if not 1 <= multiplier <= steps:
        raise KdasError(f"multiplier must be in 1..{steps}, got {multiplier}")
    shape = (num_edges(steps), len(primitives))
    w_normal = _softmax_rows(alpha_normal, *shape, name="alpha_normal")
    w_reduce = _softmax_rows(alpha_reduce, *shape, name="alpha_reduce")
    normal, normal_rows = _derive_cell(w_normal, primitives, steps)
    reduce, _ = _derive_cell(w_reduce, primitives, steps)
    if max_skip_normal is not None:
        normal = _cap_skips(normal, normal_rows, w_normal, primitives, max_skip_normal)
    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    return Genotype(
        normal=tuple(normal), normal_concat=concat, reduce=tuple(reduce), reduce_concat=concat
    )


# ---------------------------------------------------------------- JSON


def _weights_to_lists(weights: Any, name: str, rows: int, columns: int) -> list[list[float]]:
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().double().numpy()
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (rows, columns):
        raise ValueError(f"alphas[{name!r}]: expected shape ({rows}, {columns}), got {array.shape}")
    if not np.allclose(array.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"alphas[{name!r}]: rows must be softmax weights (pass alphas_softmax())")
    return array.tolist()


def genotype_to_dict(
    genotype: Genotype,
    alphas: Mapping[str, Any] | None = None,
    search_config: Any = None,
    primitives: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The JSON document of a genotype.

    `alphas` = {"normal": ..., "reduce": ...} softmax weights (edges x primitives, e.g. the
    supernet's `alphas_softmax()`), columns in the order of `primitives` (default `PRIMITIVES`).
    `search_config` is a mapping or a dataclass config and is stored as given.
    """
    primitives = list(PRIMITIVES if primitives is None else primitives)
    alphas_doc = None
    if alphas is not None:
        shape = (num_edges(genotype.steps), len(primitives))
        alphas_doc = {
            cell: _weights_to_lists(alphas[cell], cell, *shape) for cell in ("normal", "reduce")
        }
    if dataclasses.is_dataclass(search_config) and not isinstance(search_config, type):
        search_config = json.loads(json.dumps(dataclasses.asdict(search_config)))
    elif search_config is not None:
        search_config = dict(search_config)
    return {
        "format": GENOTYPE_FORMAT,
        "version": GENOTYPE_VERSION,
        "normal": [[op, j] for op, j in genotype.normal],
        "normal_concat": list(genotype.normal_concat),
        "reduce": [[op, j] for op, j in genotype.reduce],
        "reduce_concat": list(genotype.reduce_concat),
        "primitives": primitives,
        "alphas": alphas_doc,
        "search_config": search_config,
    }


def save_genotype(
    path: str | os.PathLike[str],
    genotype: Genotype,
    alphas: Mapping[str, Any] | None = None,
    search_config: Any = None,
    primitives: Sequence[str] | None = None,
) -> Path:
    """Write `genotype_to_dict(...)` atomically; returns the path."""
    return atomic_write_json(path, genotype_to_dict(genotype, alphas, search_config, primitives))


def _check_pairs(value: Any, cell: str, where: str) -> list[tuple[str, int]]:
    if not isinstance(value, list | tuple) or not value:
        raise KdasError(f"{where}: {cell} must be a non-empty list of [op, input] pairs")
    if len(value) % 2:
        raise KdasError(
            f"{where}: {cell} has {len(value)} pairs; need two per node (an even count)"
        )
    pairs = []
    for k, pair in enumerate(value):
        entry = f"{where}: {cell}[{k}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise KdasError(f"{entry}: expected [op, input], got {pair!r}")
        op, j = pair
        if not isinstance(op, str) or op not in OPS:
            raise KdasError(f"{entry}: {op!r} is not a known op (known: {known_ops()})")
        node = k // 2
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j <= node + 1:
            raise KdasError(
                f"{entry}: input {j!r} is out of range for node {node} (valid: 0..{node + 1})"
            )
        pairs.append((op, j))
    return pairs


def _check_concat(value: Any, name: str, steps: int, where: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise KdasError(f"{where}: {name} must be a non-empty list of state indices")
    for i in value:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i <= steps + 1:
            raise KdasError(f"{where}: {name}: {i!r} is out of range (valid: 0..{steps + 1})")
    if len(set(value)) != len(value):
        raise KdasError(f"{where}: {name}: repeated index in {list(value)}")
    return tuple(value)


def _from_document(doc: Mapping[str, Any], where: str, steps: int | None) -> Genotype:
    tag = doc.get("format")
    if tag != GENOTYPE_FORMAT:
        raise KdasError(f"{where}: format is {tag!r}, expected {GENOTYPE_FORMAT!r}")
    version = doc.get("version")
    if version != GENOTYPE_VERSION:
        raise KdasError(
            f"{where}: unsupported genotype version {version!r} "
            f"(this kdas reads {GENOTYPE_VERSION})"
        )
    missing = [name for name in CELL_FIELDS if name not in doc]
    if missing:
        raise KdasError(f"{where}: missing {missing[0]!r}")
    primitives = doc.get("primitives")
    if primitives is not None:
        if not isinstance(primitives, list) or not all(isinstance(p, str) for p in primitives):
            raise KdasError(f"{where}: primitives must be a list of op names")
        for k, name in enumerate(primitives):
            if name not in OPS:
                raise KdasError(
                    f"{where}: primitives[{k}]: {name!r} is not a known op (known: {known_ops()})"
                )
    normal = _check_pairs(doc["normal"], "normal", where)
    reduce = _check_pairs(doc["reduce"], "reduce", where)
    if len(normal) != len(reduce):
        raise KdasError(
            f"{where}: normal has {len(normal)} pairs but reduce has {len(reduce)}; "
            "both cells need the same number of nodes"
        )
    cell_steps = len(normal) // 2
    if steps is not None and cell_steps != steps:
        raise KdasError(
            f"{where}: cells have {len(normal)} pairs ({cell_steps} nodes), expected {2 * steps} "
            f"({steps} nodes)"
        )
    return Genotype(
        normal=tuple(normal),
        normal_concat=_check_concat(doc["normal_concat"], "normal_concat", cell_steps, where),
        reduce=tuple(reduce),
        reduce_concat=_check_concat(doc["reduce_concat"], "reduce_concat", cell_steps, where),
    )


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
    (optionally `NAME = Genotype(...)`) into a genotype document, without evaluating any code:
    the text is parsed to a syntax tree and only literals and `range` are read from it."""
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
    if len(call.args) > len(CELL_FIELDS):
        raise KdasError(f"{where}: Genotype(...) takes at most {len(CELL_FIELDS)} arguments")
    fields: dict[str, ast.expr] = dict(zip(CELL_FIELDS, call.args, strict=False))
    for keyword in call.keywords:
        if keyword.arg not in CELL_FIELDS:
            raise KdasError(
                f"{where}: unknown Genotype field {keyword.arg!r} (known: {', '.join(CELL_FIELDS)})"
            )
        if keyword.arg in fields:
            raise KdasError(f"{where}: Genotype field {keyword.arg!r} given twice")
        fields[keyword.arg] = keyword.value
    missing = [f for f in CELL_FIELDS if f not in fields]
    if missing:
        raise KdasError(f"{where}: Genotype(...) is missing {missing[0]!r}")
    doc: dict[str, Any] = {"format": GENOTYPE_FORMAT, "version": GENOTYPE_VERSION}
    doc.update({f: _darts_value(fields[f], f, where) for f in CELL_FIELDS})
    return doc


def load_genotype(
    source: str | os.PathLike[str] | Mapping[str, Any] | Genotype, steps: int | None = None
) -> Genotype:
    """A validated genotype from a kdas genotype JSON file, its dict, or DARTS' `Genotype(...)`
    form (as a string, a file holding it, or a JSON string holding it).

    Every error names the bad entry, e.g. `normal[3]: 'conv_9x9' is not a known op (...)`.
    `steps`, when given, is the node count the caller's network expects.
    """
    if isinstance(source, Genotype):
        return _from_document(genotype_to_dict(source), "genotype", steps)
    if isinstance(source, Mapping):
        return _from_document(source, "genotype", steps)
    if isinstance(source, str) and (source.lstrip().startswith("{") or "Genotype(" in source):
        text, where = source, "genotype text"
    else:
        path = Path(source)
        if not path.is_file():
            raise KdasError(f"genotype file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KdasError(f"genotype file {path} cannot be read: {exc}") from None
        where = f"genotype {path}"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if "Genotype(" in text:
            doc = text
        else:
            raise KdasError(f"{where} is not valid JSON: {exc}") from None
    if isinstance(doc, str):
        doc = parse_darts_genotype(doc, where)
    if not isinstance(doc, dict):
        raise KdasError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return _from_document(doc, where, steps)
