"""Re-ID models: the shared head, the teacher, the search space, supernet and static student.

`kdas.models.load(path)` rebuilds any model artifact folder (teacher or student).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdas.models.artifacts import LoadedModel


def load(
    path: str,
    map_location: str = "cpu",
    expect: tuple[str, ...] | None = None,
    role: str = "model folder",
) -> LoadedModel:
    """Rebuild a model from its artifact folder (config.json + model.safetensors); `expect`
    names the stages whose folders are accepted (None: any trained model)."""
    from kdas.models.artifacts import load_model_artifact

    return load_model_artifact(path, map_location=map_location, expect=expect, role=role)
