"""How a synthetic data set is made: one typed config, saved beside the data it produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kdas.errors import KdasError

SynthLayout = Literal["market1501", "dukemtmc", "cuhk03", "msmt17"]

# The camera numbers each real data set's names can hold (CUHK03 pairs two views per id).
LAYOUT_MAX_CAMERAS: dict[str, int] = {"market1501": 6, "dukemtmc": 8, "cuhk03": 2, "msmt17": 15}

# Identity numbers a layout's names use (4 digits; Market starts at 0002, 0000 is reserved).
LAYOUT_MAX_PID: dict[str, int] = {"market1501": 9999, "dukemtmc": 9999, "cuhk03": 9999}


@dataclass
class SynthConfig:
    """A synthetic pedestrian data set in the on-disk layout of a real one.

    Half the identities train, half test. Every identity is seen `images_per_camera` times by
    every camera; for each test id one image in each of `query_cameras` random cameras is a
    query, the rest is gallery. `junk` (`-1_*`) and `distractors` (`0000_*`) are written where
    the real data set has them: market1501 writes both, dukemtmc writes its distractors as
    gallery-only identities (about `distractors` images), cuhk03 and msmt17 have neither.
    """

    ids: int = 100
    cameras: int | None = None  # None: 6, or fewer when the layout has fewer (cuhk03: 2)
    images_per_camera: int = 4
    size: tuple[int, int] = (256, 128)  # (height, width)
    seed: int = 0
    layout: SynthLayout = "market1501"
    junk: int = 20
    distractors: int = 20
    query_cameras: int | None = None  # per test id; None: half the cameras, at least 1
    jpeg_quality: int = 90

    @property
    def num_cameras(self) -> int:
        top = LAYOUT_MAX_CAMERAS[self.layout]
        return self.cameras if self.cameras is not None else min(6, top)

    @property
    def num_query_cameras(self) -> int:
        if self.query_cameras is not None:
            return self.query_cameras
        return max(1, self.num_cameras // 2)

    def validate(self) -> None:
        """Reject settings the chosen layout cannot express, before anything is written."""
        if self.layout not in LAYOUT_MAX_CAMERAS:
            known = ", ".join(LAYOUT_MAX_CAMERAS)
            raise KdasError(f"synth: unknown layout {self.layout!r} (known: {known})")
        if self.seed < 0:
            raise KdasError(f"synth: seed must be >= 0, got {self.seed}")
        if self.ids < 2:
            raise KdasError(f"synth: ids must be at least 2 (train and test), got {self.ids}")
        top_cam = LAYOUT_MAX_CAMERAS[self.layout]
        if not 2 <= self.num_cameras <= top_cam:
            span = "exactly 2" if top_cam == 2 else f"2..{top_cam}"
            raise KdasError(
                f"synth: {self.layout} has {span} cameras, got cameras={self.num_cameras}"
            )
        if self.images_per_camera < 1:
            raise KdasError(f"synth: images_per_camera must be >= 1, got {self.images_per_camera}")
        if not 1 <= self.num_query_cameras <= self.num_cameras:
            raise KdasError(
                f"synth: query_cameras must be 1..{self.num_cameras}, got {self.query_cameras}"
            )
        height, width = self.size
        if height < 16 or width < 8:
            raise KdasError(f"synth: size must be at least 16x8 (HxW), got {height}x{width}")
        if self.junk < 0 or self.distractors < 0:
            raise KdasError("synth: junk and distractors must be >= 0")
        if not 1 <= self.jpeg_quality <= 95:
            raise KdasError(f"synth: jpeg_quality must be 1..95, got {self.jpeg_quality}")
        extra = -(-self.distractors // self.images_per_camera) if self.layout == "dukemtmc" else 0
        top_pid = LAYOUT_MAX_PID.get(self.layout)
        if top_pid is not None and self.ids + extra > top_pid - 1:
            raise KdasError(f"synth: {self.layout} names hold at most {top_pid - 1} identities")
