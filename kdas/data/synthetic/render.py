"""Draw one synthetic pedestrian picture: background, person, occluder, camera effects.

Everything is drawn with PIL primitives in image-relative units, so 64x32 and 256x128 pictures
show the same scene; one numpy Generator per picture makes each picture reproducible on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kdas.data.synthetic.appearance import CLOTHES, CameraStyle, Color, Identity

FACINGS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Crop:
    """How the bounding box sits on the person beyond the usual jitter: detector misalignment
    (CUHK03 detected), or the bad boxes that Market-1501 labels junk and distractor."""

    scale: float = 1.0
    dx: float = 0.0  # fraction of the width
    dy: float = 0.0  # fraction of the height


@dataclass(frozen=True)
class _Pose:
    facing: str
    phase: float  # walking phase in [-1, 1]: leg spread and arm swing
    cx: float
    top: float
    unit: float  # the person's height in pixels


def _mix(a: Color, b: Color, t: float) -> Color:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def _background(draw: ImageDraw.ImageDraw, w: int, h: int, cam: CameraStyle, rng) -> None:
    horizon = cam.horizon * h
    pan = float(rng.uniform(-0.2, 0.2))
    draw.rectangle([0, 0, w, horizon], fill=cam.wall)
    draw.rectangle([0, horizon, w, h], fill=cam.floor)
    for x0, y0, x1, y1, color in cam.fixtures:  # windows, doors, pillars on the wall
        if y0 * h < horizon:
            box = [(x0 + pan) * w, y0 * h, (x1 + pan) * w, min(y1 * h, horizon)]
            draw.rectangle(box, fill=color)
    for _ in range(int(rng.integers(0, 4))):  # passing clutter: signs, litter, shadows
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        size_w, size_h = float(rng.uniform(0.05, 0.25)) * w, float(rng.uniform(0.02, 0.1)) * h
        tone = CLOTHES[int(rng.integers(len(CLOTHES)))]
        draw.rectangle([x, y, x + size_w, y + size_h], fill=_mix(tone, cam.floor, 0.5))


def _limb(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    width: float,
    colors: tuple[Color, Color],
    split: float,
) -> None:
    """A limb from start to end, the first `split` of its length in colors[0] (a sleeve or
    trouser leg), the rest in colors[1] (skin)."""
    mid = (start[0] + (end[0] - start[0]) * split, start[1] + (end[1] - start[1]) * split)
    line_w = max(1, round(width))
    if split < 1.0:
        draw.line([mid, end], fill=colors[1], width=line_w)
    draw.line([start, mid], fill=colors[0], width=line_w)


def _torso(draw: ImageDraw.ImageDraw, person: Identity, pose: _Pose, half_w: float) -> None:
    u, cx = pose.unit, pose.cx
    x0, x1 = cx - half_w, cx + half_w
    y0, y1 = pose.top + 0.14 * u, pose.top + 0.5 * u
    draw.rounded_rectangle([x0, y0, x1, y1], radius=max(1.0, 0.035 * u), fill=person.top)
    pattern, color = person.top_pattern, person.pattern_color
    period = max(2.0, person.stripe_period * u)
    if pattern == "hstripes":
        y = y0 + period / 2
        while y < y1:
            draw.rectangle([x0, y, x1, min(y + period / 2, y1)], fill=color)
            y += period
    elif pattern == "vstripes":
        x = x0 + period / 4
        while x < x1:
            draw.rectangle([x, y0, min(x + period / 2, x1), y1], fill=color)
            x += period
    elif pattern == "logo" and pose.facing == "front":
        r, cy = 0.05 * u, pose.top + 0.27 * u
        if person.logo_shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        elif person.logo_shape == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    elif pattern == "two_tone":
        if pose.facing == "front":  # an open jacket over a shirt
            draw.rectangle([cx - 0.3 * half_w, y0, cx + 0.3 * half_w, y1], fill=color)
        else:  # the shirt shows below the jacket's hem
            draw.rectangle([x0, pose.top + 0.42 * u, x1, y1], fill=color)


def _head(draw: ImageDraw.ImageDraw, person: Identity, pose: _Pose, side: float) -> None:
    u = pose.unit
    r = 0.062 * u * person.head
    cx, cy = pose.cx + side * 0.02 * u, pose.top + 0.075 * u
    box = [cx - 0.85 * r, cy - r, cx + 0.85 * r, cy + r]
    if pose.facing == "back":
        draw.ellipse(box, fill=person.hair)
    else:
        draw.ellipse(box, fill=person.skin)
        draw.chord(box, start=180, end=360, fill=person.hair)
        if side:  # the back of the head, away from where the person looks
            back = [cx - 0.85 * r, cy - r, cx + 0.85 * r, cy + 0.6 * r]
            draw.pieslice(back, 90 if side > 0 else 270, 270 if side > 0 else 450, fill=person.hair)
    if person.hat is not None:
        draw.rectangle([cx - 0.9 * r, cy - 1.15 * r, cx + 0.9 * r, cy - 0.35 * r], fill=person.hat)
        brim = 1.25 * r if pose.facing == "front" else 0.95 * r
        draw.rectangle([cx - brim, cy - 0.45 * r, cx + brim, cy - 0.3 * r], fill=person.hat)


def _person(draw: ImageDraw.ImageDraw, person: Identity, pose: _Pose) -> None:
    u, cx, top, phase = pose.unit, pose.cx, pose.top, pose.phase
    side = {"left": -1.0, "right": 1.0}.get(pose.facing, 0.0)
    half_w = (0.1 if side else 0.15) * u * person.width
    arm_w, leg_w = 0.055 * u * person.width, 0.075 * u * person.width

    if person.backpack is not None and side:  # behind the body, on its back
        bx = cx - side * (half_w + 0.06 * u)
        pack = [min(bx, cx), top + 0.17 * u, max(bx, cx), top + 0.42 * u]
        draw.rounded_rectangle(pack, radius=max(1.0, 0.02 * u), fill=person.backpack)

    # legs, then what covers them
    hip_y, foot_y = top + 0.5 * u, top + 0.95 * u
    if side:
        feet = [(cx + side * phase * 0.12 * u, foot_y), (cx - side * phase * 0.12 * u, foot_y)]
        hips = [(cx, hip_y), (cx, hip_y)]
    else:
        spread = abs(phase) * 0.035 * u
        hips = [(cx - 0.45 * half_w, hip_y), (cx + 0.45 * half_w, hip_y)]
        feet = [(hips[0][0] - spread, foot_y), (hips[1][0] + spread, foot_y)]
    leg_split = {"trousers": 1.0, "shorts": 0.35, "skirt": 0.0}[person.bottom_kind]
    for hip, foot in zip(hips, feet, strict=True):
        _limb(draw, hip, foot, leg_w, (person.bottom, person.skin), leg_split)
        shoe_x = foot[0] + side * 0.03 * u
        draw.ellipse(
            [shoe_x - 0.7 * leg_w, foot[1] - 0.02 * u, shoe_x + 0.7 * leg_w, foot[1] + 0.025 * u],
            fill=person.shoes,
        )
    if person.bottom_kind == "skirt":
        draw.polygon(
            [
                (cx - half_w, top + 0.47 * u),
                (cx + half_w, top + 0.47 * u),
                (cx + 1.35 * half_w, top + 0.72 * u),
                (cx - 1.35 * half_w, top + 0.72 * u),
            ],
            fill=person.bottom,
        )
    else:
        draw.rectangle(
            [cx - half_w, top + 0.47 * u, cx + half_w, top + 0.58 * u], fill=person.bottom
        )

    sleeve = 0.4 if person.short_sleeves else 0.92
    arm_colors = (person.top, person.skin)
    shoulder_y, hand_y = top + 0.16 * u, top + 0.47 * u
    if side:  # the near arm swings across the body, drawn after the torso
        _torso(draw, person, pose, half_w)
        hand = (cx - side * phase * 0.1 * u, hand_y)
        _limb(draw, (cx, shoulder_y), hand, arm_w, arm_colors, sleeve)
    else:
        for sign in (-1.0, 1.0):
            shoulder_x = cx + sign * (half_w + 0.4 * arm_w)
            hand = (shoulder_x + sign * 0.015 * u + sign * phase * 0.03 * u, hand_y)
            _limb(draw, (shoulder_x, shoulder_y), hand, arm_w, arm_colors, sleeve)
        _torso(draw, person, pose, half_w)
        if person.backpack is not None:
            if pose.facing == "back":
                pack = [cx - 0.75 * half_w, top + 0.17 * u, cx + 0.75 * half_w, top + 0.43 * u]
                draw.rounded_rectangle(pack, radius=max(1.0, 0.03 * u), fill=person.backpack)
            else:  # straps over the shoulders
                for sign in (-1.0, 1.0):
                    x = cx + sign * 0.55 * half_w
                    draw.line(
                        [(x, top + 0.14 * u), (x, top + 0.36 * u)],
                        fill=person.backpack,
                        width=max(1, int(0.02 * u)),
                    )
    if person.bag is not None:  # a shoulder bag on the person's right hip
        sign = {"front": -1.0, "back": 1.0}.get(pose.facing, 0.0)
        bx = cx + sign * (half_w + 0.07 * u)
        draw.line(
            [(cx - sign * 0.6 * half_w, top + 0.15 * u), (bx, top + 0.44 * u)],
            fill=_mix(person.bag, (0, 0, 0), 0.3),
            width=max(1, int(0.012 * u)),
        )
        draw.rectangle(
            [bx - 0.05 * u, top + 0.42 * u, bx + 0.05 * u, top + 0.55 * u], fill=person.bag
        )
    _head(draw, person, pose, side)


def _occluder(draw: ImageDraw.ImageDraw, w: int, h: int, rng) -> None:
    color = CLOTHES[int(rng.integers(len(CLOTHES)))]
    color = _mix(color, (60, 60, 60), float(rng.uniform(0.3, 0.7)))
    if rng.random() < 0.6:  # a bench, car or bin in front of the legs
        height = float(rng.uniform(0.15, 0.35)) * h
        x0 = float(rng.uniform(-0.5, 0.3)) * w
        draw.rectangle([x0, h - height, x0 + float(rng.uniform(0.6, 1.2)) * w, h], fill=color)
    else:  # a pole or a passer-by at one side
        width = float(rng.uniform(0.12, 0.3)) * w
        x0 = float(rng.choice([rng.uniform(-0.1, 0.25), rng.uniform(0.55, 0.9)])) * w
        draw.rectangle([x0, float(rng.uniform(0.0, 0.3)) * h, x0 + width, h], fill=color)


def render_image(
    size: tuple[int, int],
    camera: CameraStyle,
    person: Identity | None,
    rng: np.random.Generator,
    crop: Crop | None = None,
    occlusion_prob: float = 0.3,
) -> Image.Image:
    """One picture of `person` (None: background only) through `camera`, as an RGB image.

    Per picture: pose, facing, scale and shift of the box, background pan and clutter, an
    occluder with probability `occlusion_prob`, a small lighting change and sensor noise.
    """
    h, w = size
    crop = crop or Crop()
    image = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(image)
    _background(draw, w, h, camera, rng)

    facing = FACINGS[int(rng.integers(len(FACINGS)))]
    phase = float(rng.uniform(-1.0, 1.0))
    scale = float(rng.uniform(0.88, 1.0)) * crop.scale
    dx = float(rng.uniform(-0.08, 0.08)) + crop.dx
    dy = float(rng.uniform(-0.03, 0.03)) + crop.dy
    if person is not None:
        unit = h * person.height * scale
        pose = _Pose(facing, phase, w / 2 + dx * w, (h - unit) / 2 + dy * h, unit)
        _person(draw, person, pose)
    if rng.random() < occlusion_prob:
        _occluder(draw, w, h, rng)

    radius = camera.blur * h / 256
    if radius > 0.25:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    pixels = np.asarray(image, dtype=np.float32)
    light = float(rng.uniform(0.92, 1.08))
    pixels = pixels * (np.asarray(camera.gain, dtype=np.float32) * camera.brightness * light)
    mean = pixels.mean()
    pixels = (pixels - mean) * camera.contrast + mean
    pixels += rng.normal(0.0, camera.noise, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
