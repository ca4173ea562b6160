"""What makes a synthetic person recognisable, and what a camera does to every picture.

An identity is a combination of clothing colours, patterns, accessories and body shape drawn
from small palettes, so that single cues are shared by many people and only the combination
identifies one. A camera has a colour cast, a brightness, a background and a blur that every
identity goes through equally, so the camera never tells who it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]

CLOTHES: tuple[Color, ...] = (
    (200, 40, 40),  # red
    (30, 60, 160),  # blue
    (40, 130, 60),  # green
    (230, 200, 50),  # yellow
    (240, 240, 235),  # white
    (35, 35, 40),  # black
    (130, 130, 135),  # grey
    (120, 70, 40),  # brown
    (230, 120, 30),  # orange
    (120, 50, 140),  # purple
    (240, 150, 180),  # pink
    (110, 170, 220),  # light blue
    (20, 40, 80),  # navy
    (200, 180, 140),  # beige
)
SKIN: tuple[Color, ...] = ((245, 205, 175), (225, 175, 140), (190, 140, 100), (140, 95, 60))
HAIR: tuple[Color, ...] = ((25, 20, 20), (90, 55, 30), (200, 160, 90), (150, 150, 150))
SHOES: tuple[Color, ...] = ((20, 20, 20), (240, 240, 240), (100, 60, 30), (60, 60, 70))
WALLS: tuple[Color, ...] = (
    (170, 165, 150),
    (120, 130, 140),
    (190, 180, 160),
    (90, 100, 90),
    (150, 120, 100),
    (200, 200, 205),
)
FLOORS: tuple[Color, ...] = ((110, 110, 110), (90, 85, 80), (140, 135, 125), (70, 80, 75))

TOP_PATTERNS = ("plain", "hstripes", "vstripes", "logo", "two_tone")
BOTTOM_KINDS = ("trousers", "shorts", "skirt")
LOGO_SHAPES = ("circle", "square", "triangle")


def _jitter(rng: np.random.Generator, color: Color, amount: int) -> Color:
    shifted = np.asarray(color) + rng.integers(-amount, amount + 1, size=3)
    r, g, b = (int(v) for v in np.clip(shifted, 0, 255))
    return (r, g, b)


def _pick(rng: np.random.Generator, options: tuple[Color, ...], avoid: int | None = None) -> int:
    while True:
        index = int(rng.integers(len(options)))
        if index != avoid:
            return index


@dataclass(frozen=True)
class Identity:
    """One person's looks; every picture of them is drawn from this."""

    top: Color
    top_pattern: str
    pattern_color: Color
    stripe_period: float  # fraction of the person's height
    logo_shape: str
    short_sleeves: bool
    bottom: Color
    bottom_kind: str
    shoes: Color
    skin: Color
    hair: Color
    backpack: Color | None
    bag: Color | None
    hat: Color | None
    height: float  # fraction of the image height
    width: float  # body width factor
    head: float  # head size factor


def sample_identity(rng: np.random.Generator) -> Identity:
    top_index = _pick(rng, CLOTHES)
    bottom_index = _pick(rng, CLOTHES, avoid=top_index if rng.random() < 0.8 else None)
    pattern_index = _pick(rng, CLOTHES, avoid=top_index)
    return Identity(
        top=_jitter(rng, CLOTHES[top_index], 18),
        top_pattern=TOP_PATTERNS[int(rng.choice(5, p=[0.3, 0.2, 0.15, 0.2, 0.15]))],
        pattern_color=_jitter(rng, CLOTHES[pattern_index], 18),
        stripe_period=float(rng.uniform(0.035, 0.07)),
        logo_shape=LOGO_SHAPES[int(rng.integers(3))],
        short_sleeves=bool(rng.random() < 0.4),
        bottom=_jitter(rng, CLOTHES[bottom_index], 18),
        bottom_kind=BOTTOM_KINDS[int(rng.choice(3, p=[0.65, 0.2, 0.15]))],
        shoes=SHOES[int(rng.integers(len(SHOES)))],
        skin=_jitter(rng, SKIN[int(rng.integers(len(SKIN)))], 8),
        hair=HAIR[int(rng.integers(len(HAIR)))],
        backpack=_jitter(rng, CLOTHES[_pick(rng, CLOTHES)], 15) if rng.random() < 0.3 else None,
        bag=_jitter(rng, CLOTHES[_pick(rng, CLOTHES)], 15) if rng.random() < 0.25 else None,
        hat=_jitter(rng, CLOTHES[_pick(rng, CLOTHES)], 15) if rng.random() < 0.2 else None,
        height=float(rng.uniform(0.8, 0.95)),
        width=float(rng.uniform(0.82, 1.18)),
        head=float(rng.uniform(0.9, 1.1)),
    )


@dataclass(frozen=True)
class CameraStyle:
    """One camera's viewing conditions, shared by everyone it films."""

    gain: tuple[float, float, float]  # per-channel colour cast
    brightness: float
    contrast: float
    wall: Color
    floor: Color
    horizon: float  # fraction of the image height
    fixtures: tuple[tuple[float, float, float, float, Color], ...]  # x0, y0, x1, y1 (fractions)
    blur: float  # Gaussian sigma at 256 px height
    noise: float  # pixel noise standard deviation


def sample_camera(rng: np.random.Generator) -> CameraStyle:
    gain = rng.uniform(0.82, 1.18, size=3)
    fixtures = []
    for _ in range(int(rng.integers(2, 5))):
        x0 = float(rng.uniform(-0.2, 1.0))
        y0 = float(rng.uniform(0.0, 0.6))
        fixtures.append(
            (
                x0,
                y0,
                x0 + float(rng.uniform(0.08, 0.45)),
                y0 + float(rng.uniform(0.1, 0.5)),
                _jitter(rng, WALLS[int(rng.integers(len(WALLS)))], 40),
            )
        )
    return CameraStyle(
        gain=(float(gain[0]), float(gain[1]), float(gain[2])),
        brightness=float(rng.uniform(0.72, 1.15)),
        contrast=float(rng.uniform(0.8, 1.1)),
        wall=_jitter(rng, WALLS[int(rng.integers(len(WALLS)))], 20),
        floor=_jitter(rng, FLOORS[int(rng.integers(len(FLOORS)))], 15),
        horizon=float(rng.uniform(0.45, 0.75)),
        fixtures=tuple(fixtures),
        blur=float(rng.uniform(0.0, 1.4)),
        noise=float(rng.uniform(2.0, 7.0)),
    )
