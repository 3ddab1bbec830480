"""Numpy renderer of the generated demo corpus: scene backgrounds, shapes, motions, noise.

Pure functions of their arguments and a numpy Generator (no I/O), so the same seed draws the same
pixels. Positions are fractions of the frame side; images are float32 (H, W, 3) in 0..255 until
`finish_frames` adds noise and converts to uint8.

    bg = scene_background("grass", rng, 64)                          # (64, 64, 3)
    track = sample_track("left", n_frames=24, rng=rng)
    clip = render_clip(bg, "square", (215, 40, 35), 0.09, track)      # (24, 64, 64, 3)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from prvr.demo.vocabulary import SCENES

DISTRACTOR_PROB = 0.7   # chance that a video (or a pretraining still) has a wandering grey dot


@functools.lru_cache(maxsize=8)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (ys, xs), each (side, side) float32."""
    coords = np.arange(side, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords, indexing="ij")


# ----------------------------------------------------------------------------- backgrounds
def _sunset(ys, xs, side, rng):
    top = np.array([110, 55, 120], np.float32)       # violet sky above
    bottom = np.array([250, 150, 70], np.float32)    # orange glow at the horizon
    t = (ys / side)[..., None] ** rng.uniform(0.8, 1.3)
    bands = 6.0 * np.sin(ys / side * rng.uniform(10, 16) + rng.uniform(0, 6.3))[..., None]
    return top * (1 - t) + bottom * t + bands


def _night(ys, xs, side, rng):
    img = np.zeros((side, side, 3), np.float32) + np.array([12, 16, 40], np.float32)
    img += (ys / side)[..., None] * np.array([10, 12, 25], np.float32)
    n_stars = int(side * side / rng.uniform(60, 110))
    sy, sx = rng.integers(0, side, n_stars), rng.integers(0, side, n_stars)
    img[sy, sx] = rng.uniform(150, 230, (n_stars, 1))
    return img


def _texture(scene: str, ys, xs, side, rng) -> np.ndarray:
    """Brightness pattern (side, side) added to the scene's base colour."""
    u, v = xs / side, ys / side
    if scene == "grass":
        blades = rng.normal(0, 12, side)[None, :] * (0.5 + v)       # vertical streaks
        return blades - 25 * v + rng.normal(0, 6, (side, side))
    if scene == "desert":
        phase = rng.uniform(0, 6.3)
        return 18 * np.sin(2 * np.pi * (v * rng.uniform(2, 4) + 0.3 * np.sin(3 * u + phase)))
    if scene == "ocean":
        return 20 * np.maximum(0, np.sin(2 * np.pi * (v * rng.uniform(5, 8) + 0.15 * np.sin(6 * u)))) ** 4
    if scene == "brick":
        rows = max(side // 8, 2)
        row = (ys // rows).astype(int)
        cols = (xs + (row % 2) * rows) // (2 * rows)
        mortar = (ys % rows < 1) | ((xs + (row % 2) * rows) % (2 * rows) < 1)
        shade = rng.normal(0, 10, (side, side + 2))[row, cols.astype(int) % (side + 2)]
        return np.where(mortar, 70.0, shade)
    if scene == "snow":
        return rng.normal(0, 5, (side, side)) - 10 * (1 - v)
    if scene == "room":
        tile = max(side // 8, 2)
        checker = ((ys // tile + xs // tile) % 2) * 2 - 1
        return 16 * checker + rng.normal(0, 3, (side, side))
    raise ValueError(f"unknown scene {scene!r}")


def scene_background(scene: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """A fresh instance of `scene` (random texture phase and tint): float32 (side, side, 3)."""
    ys, xs = _grid(side)
    if scene == "sunset":
        img = _sunset(ys, xs, side, rng)
    elif scene == "night":
        img = _night(ys, xs, side, rng)
    else:
        base = np.array(SCENES[scene][0], np.float32)
        img = base + _texture(scene, ys, xs, side, rng)[..., None]
    tint = rng.uniform(-10, 10, 3).astype(np.float32)
    return np.clip(img + tint, 0, 255).astype(np.float32)


# ----------------------------------------------------------------------------- shapes
def shape_mask(shape: str, cx: float, cy: float, radius: float, angle: float, side: int) -> np.ndarray:
    """Boolean (side, side) mask of `shape` centred at pixel (cx, cy), rotated by `angle` radians."""
    ys, xs = _grid(side)
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= radius * radius) & (d2 >= (0.55 * radius) ** 2)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = dx * cos + dy * sin, dy * cos - dx * sin                  # rotated coordinates
    au, av = np.abs(u), np.abs(v)
    if shape == "square":
        return np.maximum(au, av) <= 0.8 * radius
    if shape == "diamond":                                             # elongated: not a rotated square
        return au / (0.7 * radius) + av / (1.25 * radius) <= 1.0
    if shape == "cross":
        return ((au <= 0.3 * radius) & (av <= radius)) | ((av <= 0.3 * radius) & (au <= radius))
    if shape == "bar":
        return (au <= radius) & (av <= 0.35 * radius)
    if shape == "triangle":                                            # apex up, edges at 0.65 r from centre
        half = 0.65 * radius
        return (v <= half) & (0.866 * u - 0.5 * v <= half) & (-0.866 * u - 0.5 * v <= half)
    raise ValueError(f"unknown shape {shape!r}")


# ----------------------------------------------------------------------------- motions
@dataclass
class Track:
    """Per-frame state of the shape; each field is (n_frames,)."""
    x: np.ndarray        # centre, fraction of width
    y: np.ndarray        # centre, fraction of height (0 = top)
    scale: np.ndarray    # multiplies the size's radius
    angle: np.ndarray    # radians
    visible: np.ndarray  # bool


def _linear(a: float, b: float, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def sample_track(motion: str, n_frames: int, rng: np.random.Generator, rotation_order: int = 1) -> Track:
    """Random trajectory of one event of `motion` lasting `n_frames` frames.

    Repeated motions repeat a set number of times per event (1-2 bounces or blinks, one loop),
    whatever its length, so an event's few frame tokens (about 6 of a video's 32) span whole
    repetitions; a spin turns by 0.5-1 of the shape's symmetry period (rotation_order: 4 for a
    square, whose quarter turn looks like no turn).
    """
    t = np.linspace(0.0, 1.0, n_frames)                    # event progress
    ones = np.ones(n_frames)
    x, y = ones * rng.uniform(0.3, 0.7), ones * rng.uniform(0.3, 0.7)
    scale, angle, visible = ones.copy(), ones * rng.uniform(-0.35, 0.35), ones > 0
    far, near = rng.uniform(0.7, 0.85), rng.uniform(0.15, 0.3)
    if motion in ("left", "right", "up", "down"):
        path = _linear(far, near, t) if motion in ("left", "up") else _linear(near, far, t)
        cross_axis = ones * rng.uniform(0.25, 0.75)
        x, y = (path, cross_axis) if motion in ("left", "right") else (cross_axis, path)
    elif motion == "bounce":
        n_bounces = int(rng.integers(1, 3))
        y = rng.uniform(0.65, 0.78) - rng.uniform(0.3, 0.4) * np.abs(np.sin(np.pi * n_bounces * t))
    elif motion in ("grow", "shrink"):
        small, big = rng.uniform(0.5, 0.65), rng.uniform(1.25, 1.5)
        scale = _linear(small, big, t) if motion == "grow" else _linear(big, small, t)
    elif motion == "spin":
        turn = rng.uniform(0.5, 1.0) * 2 * np.pi / max(rotation_order, 1) * rng.choice([-1, 1])
        angle = angle + turn * t
    elif motion == "blink":
        cycles = rng.uniform(1.0, 2.0)
        visible = ((t * cycles + rng.uniform(0, 0.25)) % 1.0) < 0.5
    elif motion == "orbit":
        theta = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * 2 * np.pi * t
        radius = rng.uniform(0.2, 0.27)
        x, y = 0.5 + radius * np.cos(theta), 0.5 + radius * np.sin(theta)
    elif motion == "shake":
        x = x + rng.choice([-1, 1], n_frames) * rng.uniform(0.05, 0.09, n_frames)
        y = y + rng.uniform(-0.02, 0.02, n_frames)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return Track(np.clip(x, 0.08, 0.92), np.clip(y, 0.08, 0.92), scale, angle, visible)


# ----------------------------------------------------------------------------- frames
def render_clip(background: np.ndarray, shape: str, rgb, radius: float, track: Track) -> np.ndarray:
    """Frames of one event: the shape drawn over the background. float32 (n_frames, H, W, 3).

    radius: fraction of the frame side (before the track's scale).
    """
    side = background.shape[0]
    colour = np.asarray(rgb, np.float32)
    frames = np.repeat(background[None], len(track.x), axis=0)     # (T, H, W, 3)
    for i in range(len(track.x)):
        if track.visible[i]:
            mask = shape_mask(shape, track.x[i] * side, track.y[i] * side,
                              radius * track.scale[i] * side, track.angle[i], side)
            frames[i][mask] = colour
    return frames


def add_distractor(frames: np.ndarray, rng: np.random.Generator) -> None:
    """Draw, in place, a small dim dot wandering over all frames (never described in captions)."""
    n, side = frames.shape[0], frames.shape[1]
    steps = rng.normal(0, 0.02, (n, 2)).cumsum(axis=0) + rng.uniform(0.15, 0.85, 2)
    pos = (np.abs((steps + 1) % 2 - 1) * side).astype(int).clip(0, side - 2)  # reflect at the edges
    grey = np.float32(rng.uniform(90, 170))
    for i, (px, py) in enumerate(pos):
        frames[i, py:py + 2, px:px + 2] = grey


def brightness_drift(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Slow lighting change over a video: gains around 1, (n_frames,) float32."""
    phase = np.linspace(0, rng.uniform(1, 4), n_frames) + rng.uniform(0, 6.3)
    return (1.0 + 0.06 * np.sin(phase)).astype(np.float32)


def finish_frames(frames: np.ndarray, gains: np.ndarray, rng: np.random.Generator,
                  noise: int = 7) -> np.ndarray:
    """Scale each frame by its gain, add sensor noise; uint8 frames of the same shape.

    noise: half-width of uniform integer noise per value (7 gives a standard deviation of about 4);
    integer draws are several times faster than Gaussian ones.
    """
    noisy = frames * gains.astype(np.float32)[:, None, None, None]
    noisy += rng.integers(-noise, noise + 1, frames.shape, dtype=np.int8)
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
