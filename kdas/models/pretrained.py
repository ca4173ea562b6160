"""Starting a student from pre-trained weights (`kdas train --init`, paper 4.4).

The source is a `kdas pretrain` folder (its model.safetensors) or any .safetensors file. Every
tensor whose name and shape match is copied; the classifier is never copied (its classes are
the pre-training set's, not the Re-ID identities), and anything else that does not match
means the backbone is another network: that is an error naming the tensors, not a partial load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from kdas.errors import KdasError
from kdas.files import CONFIG_FILE, WEIGHTS_FILE

CLASSIFIER_PREFIX = "head.classifier."  # kdas.models.head.ReIDHead.classifier
HINT = "pretrain the same genotype and width (--genotype, --channels, model.layers) as the student"


@dataclass
class InitReport:
    source: str  # the weights file read ("" when there was nothing to load)
    loaded: int  # tensors copied into the model
    skipped: list[str] = field(default_factory=list)  # the classifier's names, not copied

    def summary(self) -> str:
        if not self.source:
            return "no initial weights (training from scratch)"
        skipped = f"; skipped {', '.join(self.skipped)} (new classes)" if self.skipped else ""
        return f"initialised {self.loaded} tensors from {self.source}{skipped}"


def weights_path(source: str | Path) -> Path:
    """The safetensors file of `source` (a folder holding model.safetensors, or the file)."""
    path = Path(source)
    if not path.exists():
        raise KdasError(f"initial weights not found: {path}")
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise KdasError(
                f"{path} holds no {WEIGHTS_FILE}: --init takes a finished `kdas pretrain` folder "
                "or a .safetensors file"
            )
        return weights
    if path.suffix != ".safetensors":
        raise KdasError(
            f"--init {path}: kdas reads initial weights from safetensors only; give a "
            "`kdas pretrain` folder or a .safetensors file"
        )
    return path


def _read(weights: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(weights), device="cpu")
    except Exception as exc:
        raise KdasError(
            f"cannot read {weights} ({type(exc).__name__}); the file is damaged or not "
            "safetensors: pretrain again"
        ) from None


def _check_genotype(model: torch.nn.Module, folder: Path) -> None:
    """A pre-training folder records its genotype; two cells that differ only in ops without
    weights (pooling, skip) would otherwise load "successfully" into the wrong network."""
    from kdas.models.genotype import load_genotype

    mine = getattr(model, "genotype", None)
    config_path = folder / CONFIG_FILE
    if mine is None or not config_path.is_file():
        return
    try:
        theirs = json.loads(config_path.read_text()).get("model", {}).get("genotype")
    except (json.JSONDecodeError, AttributeError):
        return  # the tensors are still checked one by one
    if theirs is not None and load_genotype(theirs) != mine:
        raise KdasError(f"{folder} was pre-trained with another genotype than the student; {HINT}")


def _mismatches(model_state: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> list[str]:
    """What does not fit, classifier aside: shapes that differ, names on one side only."""
    wrong = []
    for name, tensor in model_state.items():
        if name.startswith(CLASSIFIER_PREFIX):
            continue
        if name not in source:
            wrong.append(f"{name} missing there")
        elif tuple(source[name].shape) != tuple(tensor.shape):
            wrong.append(f"{name} {list(source[name].shape)} there vs {list(tensor.shape)} here")
    extra = [n for n in source if n not in model_state and not n.startswith(CLASSIFIER_PREFIX)]
    return wrong + [f"{name} not in the student" for name in extra]


def load_init_weights(model: torch.nn.Module, source: str | Path) -> InitReport:
    """Copy the pre-trained backbone (and head BN) of `source` into `model`, in place.

    The classifier is skipped and reported; any other tensor that is missing, extra or of
    another shape raises KdasError naming the first ones. An empty `source` loads nothing.
    """
    if not str(source):
        return InitReport(source="", loaded=0)
    weights = weights_path(source)
    if Path(source).is_dir():
        _check_genotype(model, Path(source))
    state = _read(weights)
    model_state = model.state_dict()
    wrong = _mismatches(model_state, state)
    if wrong:
        shown = "; ".join(wrong[:3]) + (f"; and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        raise KdasError(
            f"{weights} does not fit this student ({len(wrong)} tensors differ: {shown}); {HINT}"
        )
    copy = {
        n: t for n, t in state.items() if n in model_state and not n.startswith(CLASSIFIER_PREFIX)
    }
    model.load_state_dict(copy, strict=False)
    skipped = sorted(n for n in model_state if n.startswith(CLASSIFIER_PREFIX))
    return InitReport(source=str(weights), loaded=len(copy), skipped=skipped)
