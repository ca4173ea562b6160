"""Model artifact folders: `config.json` (how it was made) + `model.safetensors` (weights).

Any folder written here loads back with `kdas.models.load(path)`; export, parity, bench and
the pipeline all go through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kdas import __version__
from kdas.errors import KdasError
from kdas.files import CONFIG_FILE, WEIGHTS_FILE
from kdas.models.builder import build_model
from kdas.models.head import ReIDModel
from kdas.models.spec import ModelSpec
from kdas.utils.atomic import atomic_output_path, atomic_write_json
from kdas.utils.config import from_dict, to_dict
from kdas.utils.hashing import sha256_file


@dataclass
class LoadedModel:
    model: ReIDModel
    spec: ModelSpec
    config: dict[str, Any]  # the whole config.json
    path: Path
    weights_sha256: str


def save_weights(model: torch.nn.Module, path: str | Path) -> str:
    """Write a state dict as safetensors atomically; returns its sha256 (the model identity)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output_path(path) as tmp:
        save_file(state, str(tmp))
    return sha256_file(path)


def save_model_artifact(
    out_dir: str | Path,
    model: torch.nn.Module,
    spec: ModelSpec,
    stage: str,
    stage_config: Any = None,
    facts: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights then config; the config is written last, so a folder with a config.json
    always has complete weights."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = save_weights(model, out_dir / WEIGHTS_FILE)
    config = {
        "kdas_version": __version__,
        "stage": stage,
        "model": to_dict(spec),
        "weights_sha256": digest,
        "facts": facts or {},
        "config": to_dict(stage_config) if stage_config is not None else None,
        **(extra or {}),
    }
    atomic_write_json(out_dir / CONFIG_FILE, config)
    return out_dir


def read_artifact_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not path.is_dir():
        raise KdasError(f"model folder not found: {path}")
    if not config_path.is_file():
        raise KdasError(
            f"{path} is not a kdas model folder: {CONFIG_FILE} is missing "
            "(expected the output folder of `kdas teacher train` or `kdas train`)"
        )
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise KdasError(f"{config_path} is not valid JSON ({exc}); re-run the stage") from None


# What each stage's folder is, for the message when one is given where another is expected.
_MADE_BY = {
    "teacher": "`kdas teacher train` (runs/NAME/teacher)",
    "student": "`kdas train` (runs/NAME/student)",
    "search": "`kdas search` (runs/NAME/search)",
    "pretrain": "`kdas pretrain`",
}


def check_artifact_kind(
    path: Path, config: dict[str, Any], expect: tuple[str, ...], role: str
) -> None:
    """A folder of the wrong stage (a student given as --teacher, a search folder given as a
    model) is refused where it is consumed, before it can train or export the wrong thing."""
    kind = config.get("stage") or (config.get("model") or {}).get("kind") or "unknown"
    if kind in expect:
        return
    wanted = " or ".join(_MADE_BY.get(k, k) for k in expect)
    raise KdasError(
        f"{role} {path} holds a {kind} (made by {_MADE_BY.get(kind, 'an unknown stage')}), "
        f"but a folder made by {wanted} is needed"
    )


def load_model_artifact(
    path: str | Path,
    map_location: str = "cpu",
    expect: tuple[str, ...] | None = None,
    role: str = "model folder",
) -> LoadedModel:
    """Rebuild the network from config.json, load its safetensors weights, set eval mode.
    `expect`: the stages whose folders are accepted (None: any model)."""
    path = Path(path)
    config = read_artifact_config(path)
    check_artifact_kind(path, config, expect or ("teacher", "student", "pretrain"), role)
    if "model" not in config:
        raise KdasError(f"{path / CONFIG_FILE} has no `model` section; re-run the stage")
    spec = from_dict(ModelSpec, config["model"], where=f"{path / CONFIG_FILE}:model")
    model = build_model(spec, load_imagenet=False)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise KdasError(f"{weights} is missing; the stage did not finish, re-run or --resume it")
    try:
        state = load_file(str(weights), device=map_location)
    except Exception as exc:
        raise KdasError(
            f"cannot read {weights} ({exc}); the file is damaged, re-run the stage"
        ) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KdasError(
            f"{weights} does not match the model in {CONFIG_FILE}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected keys "
            f"(e.g. {(missing or unexpected)[0]})"
        )
    model.eval()
    return LoadedModel(model, spec, config, path, sha256_file(weights))
