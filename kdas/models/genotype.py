"""Genotypes: a searched architecture as plain, validated data.

A genotype lists, for each of the two cell types, two `(op, input)` pairs per intermediate node
(pair k feeds node k // 2; input 0 and 1 are the cell's two inputs, input j >= 2 is node j - 2)
and the states whose concatenation is the cell's output. `kdas.models.derive` turns α into one;
`save_genotype` / `load_genotype` move it through JSON, validated against the op registry so a
wrong entry is named instead of failing deep inside the network builder. `load_genotype` also
reads DARTS' `Genotype(...)` text (`kdas.models.darts_text`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdas.errors import KdasError
from kdas.models.darts_text import parse_darts_genotype
from kdas.models.ops import OPS, PRIMITIVES, SKIP, known_ops
from kdas.utils.atomic import atomic_write_json

GENOTYPE_FORMAT = "kdas-genotype"
GENOTYPE_VERSION = 1


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


CELL_FIELDS = tuple(f.name for f in dataclasses.fields(Genotype))


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
        doc = {
            "format": GENOTYPE_FORMAT,
            "version": GENOTYPE_VERSION,
            **parse_darts_genotype(doc, where),
        }
    if not isinstance(doc, dict):
        raise KdasError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return _from_document(doc, where, steps)
