"""Write a synthetic data set to disk, reproducibly, in one atomic step."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from kdas import __version__
from kdas.data.synthetic.appearance import CameraStyle, Identity, sample_camera, sample_identity
from kdas.data.synthetic.config import SynthConfig
from kdas.data.synthetic.plan import (
    DATA_FOLDER,
    SEED_CAMERA,
    SEED_IDENTITY,
    Plan,
    Shot,
    detected_crop,
    make_plan,
)
from kdas.data.synthetic.render import render_image
from kdas.errors import KdasError
from kdas.files import SYNTH_CONFIG_FILE
from kdas.progress import track
from kdas.utils.atomic import atomic_directory, atomic_write_json
from kdas.utils.config import to_dict


def _encode(image, suffix: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if suffix == ".png":
        image.save(buffer, "PNG", compress_level=1)  # noisy pixels barely compress
    else:  # fixed quality and settings: the same pixels give the same bytes
        image.save(buffer, "JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder that holds anything but an earlier synthetic data set."""
    if out_dir.exists() and not out_dir.is_dir():
        raise KdasError(f"synth: {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SYNTH_CONFIG_FILE).is_file():
        raise KdasError(
            f"synth: {out_dir} is not empty and was not made by `kdas data synth`; "
            "choose a new or empty folder"
        )


def count_splits(plan: Plan) -> dict[str, int]:
    """Pictures per split and kind (each CUHK03 variant holds all of them)."""
    counts: dict[str, int] = {}
    for shot in plan.shots:
        key = shot.split if shot.kind == "person" else f"{shot.split}_{shot.kind}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def synthesize(out_dir: str | Path, config: SynthConfig, progress: bool = False) -> Path:
    """Write a synthetic data set in `config.layout`'s exact layout; return the root to give
    `load_dataset(root, config.layout)`. The same config writes the same bytes.

    The data set sits in the real data set's own folder (e.g. `Market-1501-v15.09.15/`) inside
    `out_dir`, next to `synth_config.json`, which records how it was made. An earlier synthetic
    data set in `out_dir` is replaced as a whole; any other non-empty folder is refused.
    """
    config.validate()
    out_dir = Path(out_dir).expanduser().resolve()
    _check_target(out_dir)
    plan = make_plan(config)
    identities: dict[int, Identity] = {}
    cameras: dict[int, CameraStyle] = {
        cam: sample_camera(np.random.default_rng([config.seed, SEED_CAMERA, cam]))
        for cam in range(1, config.num_cameras + 1)
    }

    def identity(index: int) -> Identity:
        if index not in identities:
            rng = np.random.default_rng([config.seed, SEED_IDENTITY, index])
            identities[index] = sample_identity(rng)
        return identities[index]

    def draw(shot: Shot, variant: str):
        person = identity(shot.identity) if shot.identity is not None else None
        crop = detected_crop(shot) if variant == "detected" else shot.crop
        rng = np.random.default_rng(shot.key)
        return render_image(config.size, cameras[shot.cam], person, rng, crop)

    jobs = [(variant, n) for variant in plan.paths for n in range(len(plan.shots))]
    with atomic_directory(out_dir) as tmp:
        for path in {Path(p).parent for paths in plan.paths.values() for p in paths}:
            (tmp / path).mkdir(parents=True, exist_ok=True)
        for variant, n in track(jobs, f"writing {config.layout}", progress):
            relative = plan.paths[variant][n]
            image = draw(plan.shots[n], variant)
            data = _encode(image, Path(relative).suffix, config.jpeg_quality)
            (tmp / relative).write_bytes(data)
        for relative, text in plan.lists.items():
            (tmp / relative).write_text(text, encoding="utf-8")
        atomic_write_json(
            tmp / SYNTH_CONFIG_FILE,
            {
                "generator": "kdas.data.synthetic",
                "kdas_version": __version__,
                "config": to_dict(config),
                "layout": config.layout,
                "data_folder": DATA_FOLDER[config.layout],
                "cameras": config.num_cameras,
                "query_cameras": config.num_query_cameras,
                "counts": count_splits(plan),
                "identities": config.ids,
            },
        )
    return out_dir
