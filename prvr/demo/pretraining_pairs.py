"""Generated (still frame, caption, attributes) triples that pretrain the demo's tiny CLIP.

Same vocabulary and renderer as the corpus (prvr.demo.synthetic), from a random stream of their own,
so no retrieval video is ever seen. A still shows one shape at one instant of what an event draws
(any scene, colour, shape, grid cell, size, angle; or the empty scene a blinking shape leaves),
drawn at the corpus' 64 px and area-averaged down to the model's side as a decoded video frame is.
Its caption says what a single frame shows, never a motion: shape, colour and scene always (as the
corpus captions), size and position often (NAME_PROB).

The attributes each still was drawn with are returned too (`still_labels`); pretraining uses them
for an auxiliary attribute loss (prvr.features.pretrain). That is honest only because the DAG
generates these stills itself and so knows them; no label of the retrieval corpus is ever used.

    images, captions, labels = sample_pretraining_pairs(1024, seed=1, image_size=32)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from prvr.demo import render
from prvr.demo.vocabulary import (COLOURS, POSITION_WORDS, ROTATION_ORDER, SCENES, SHAPES, SIZE_RADIUS, SIZES,
                                  _article, _noun_phrase, _pick, _sentence, visible_colours)
from prvr.errors import PrvrError

_PRETRAIN_STREAM = 0x5052    # keeps the pretraining stream apart from every video's
EMPTY_PROB = 0.03            # chance that a still is the empty scene (what a blinking shape leaves)
NAME_PROB = 0.6              # chance that a caption names the size word (when clear) and the grid cell
BACKGROUNDS = 12             # background instances drawn per scene
RENDER_SIDE = 64             # stills are drawn at least this large (the corpus' frame side), then
                             # area-averaged down to the model's side, as the videos are decoded
_EMPTY_WORDS = ("nothing", "an empty scene", "no shape", "just the background")
CELLS = tuple(POSITION_WORDS)


class PairsError(PrvrError, ValueError):
    """Pretraining pairs cannot be made as asked."""


@dataclass(frozen=True)
class Still:
    """What one pretraining still shows; shape None = the empty scene."""
    scene: str
    colour: str
    shape: str | None = None
    x: float = np.nan              # centre, fractions of the side
    y: float = np.nan
    radius: float = np.nan         # fraction of the side
    angle: float = np.nan          # radians
    size_word: str | None = None   # "small" / "large" when the caption names a size
    cell_named: bool = False       # the caption names the grid cell


def _cell_position(rng: np.random.Generator, cell: tuple[int, int]) -> tuple[float, float]:
    """(x, y) drawn inside a cell (row, col) of the 3 x 3 grid that POSITION_WORDS names, a little
    away from its borders so the words are right."""
    row, col = cell
    x = rng.uniform(max(0.1, col / 3 + 0.03), min(0.9, (col + 1) / 3 - 0.03))
    y = rng.uniform(max(0.1, row / 3 + 0.03), min(0.9, (row + 1) / 3 - 0.03))
    return float(x), float(y)


def _radius(rng: np.random.Generator, size: str) -> tuple[float, str]:
    """(radius as a fraction of the side, size word class or "none"): the corpus' sizes, and for
    "none" the range that growing and shrinking shapes pass through (named when clearly small/large)."""
    if size != "none":
        return SIZE_RADIUS[size] * rng.uniform(0.85, 1.15), size
    radius = SIZE_RADIUS["none"] * rng.uniform(0.5, 1.5)
    return radius, "small" if radius < 0.145 else "large" if radius > 0.185 else "none"


def still_caption(rng: np.random.Generator, still: Still) -> str:
    """'A small crimson box in the top left on the grass.': shape, colour and scene always; size and
    position when the still says so."""
    scene_words = _pick(rng, SCENES[still.scene][1])
    if still.shape is None:
        return _sentence(f"{_pick(rng, _EMPTY_WORDS)} {scene_words}")
    noun = _noun_phrase({"size": still.size_word or "none", "colour": still.colour, "shape": still.shape}, rng,
                        with_size=True)
    cell = (min(int(still.y * 3), 2), min(int(still.x * 3), 2))
    where = POSITION_WORDS[cell] if still.cell_named else ""
    text = (f"{scene_words}, {_article(noun)} {noun} {where}" if rng.random() < 0.3
            else f"{_article(noun)} {noun} {where} {scene_words}")
    return _sentence(text)


def sample_still(rng: np.random.Generator) -> Still:
    """One random still: any scene, a colour visible on it, any shape, grid cell, size and angle,
    or (EMPTY_PROB) the empty scene a blinking shape leaves."""
    scene = _pick(rng, list(SCENES))
    colour = _pick(rng, visible_colours(scene))
    if rng.random() < EMPTY_PROB:
        return Still(scene, colour)
    x, y = _cell_position(rng, _pick(rng, CELLS))
    radius, size_word = _radius(rng, _pick(rng, ("small", "large", "none")))
    angle = rng.uniform(-np.pi, np.pi) if rng.random() < 0.3 else rng.uniform(-0.6, 0.6)
    return Still(scene, colour, _pick(rng, list(SHAPES)), x, y, radius, float(angle),
                 size_word if size_word in SIZES and rng.random() < NAME_PROB else None,
                 cell_named=rng.random() < NAME_PROB)


def _draw(rng: np.random.Generator, bank: dict, still: Still, side: int) -> np.ndarray:
    """float32 (side, side, 3): a background instance of the still's scene (from the bank, mirrored
    and rolled at random) with the shape drawn on it, sometimes a distractor dot."""
    background = _pick(rng, bank[still.scene])
    if rng.random() < 0.5:
        background = background[:, ::-1]
    frame = np.roll(background, int(rng.integers(side)), axis=1).copy()
    if still.shape is not None:
        rgb = np.clip(np.array(COLOURS[still.colour][0]) + rng.integers(-15, 16, 3), 0, 255)
        track = render.Track(np.array([still.x]), np.array([still.y]), np.array([1.0]),
                             np.array([still.angle]), np.array([True]))
        frame = render.render_clip(frame, still.shape, rgb, still.radius, track)[0]
    if rng.random() < render.DISTRACTOR_PROB:
        render.add_distractor(frame[None], rng)
    return frame


def _index(values, value) -> int:
    return list(values).index(value) if value is not None else -1


def still_labels(stills: list[Still]) -> dict[str, np.ndarray]:
    """Attribute targets of the stills: image_* (what the still shows) and text_* (what its caption
    names) as (N,) int64 class indices, -1 = not shown / not named; image_geometry (N, 5) float32:
    x, y, log radius, cos and sin of (rotation order x angle), NaN where the still has no such thing
    (no shape, or a shape that looks the same at every angle)."""
    shown = [s.shape is not None for s in stills]
    shape = [_index(SHAPES, s.shape) for s in stills]
    colour = [_index(COLOURS, s.colour) if v else -1 for s, v in zip(stills, shown)]
    scene = [_index(SCENES, s.scene) for s in stills]
    geometry = np.full((len(stills), 5), np.nan, np.float32)
    for row, s in enumerate(stills):
        if s.shape is not None:
            order = ROTATION_ORDER[s.shape]
            turn = (np.cos(order * s.angle), np.sin(order * s.angle)) if order else (np.nan, np.nan)
            geometry[row] = (s.x, s.y, np.log(s.radius), *turn)
    cell = [_index(CELLS, (min(int(s.y * 3), 2), min(int(s.x * 3), 2))) if s.cell_named else -1 for s in stills]
    labels = {"image_shape": shape, "image_colour": colour, "image_scene": scene,
              "image_visible": [int(v) for v in shown],
              "text_shape": shape, "text_colour": colour, "text_scene": scene,  # captions always name them
              "text_size": [_index(SIZES, s.size_word) for s in stills], "text_cell": cell}
    out = {name: np.array(values, np.int64) for name, values in labels.items()}
    out["image_geometry"] = geometry
    return out


def _downsample(frames: np.ndarray, factor: int) -> np.ndarray:
    """Area average by `factor` in both directions: (N, S, S, 3) -> (N, S / f, S / f, 3)."""
    if factor == 1:
        return frames
    n, side = frames.shape[0], frames.shape[1] // factor
    return frames.reshape(n, side, factor, side, factor, 3).mean(axis=(2, 4))


def sample_pretraining_pairs(n: int, seed: int, image_size: int):
    """`n` random stills (n, image_size, image_size, 3) uint8, their captions and their labels
    (`still_labels`)."""
    if n < 0 or image_size < 8:
        raise PairsError(f"pretraining pairs: need n >= 0 and image_size >= 8, got {n}, {image_size}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PRETRAIN_STREAM]))
    scale = max(1, RENDER_SIDE // image_size)
    side = scale * image_size
    bank = {scene: [render.scene_background(scene, rng, side) for _ in range(BACKGROUNDS)] for scene in SCENES}
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    stills = [sample_still(rng) for _ in range(n)]
    captions = [still_caption(rng, still) for still in stills]
    for begin in tqdm(range(0, n, 1024), desc="pretraining frames", unit="chunk"):
        chunk = np.stack([_draw(rng, bank, still, side) for still in stills[begin:begin + 1024]])
        gains = rng.uniform(0.92, 1.08, len(chunk))         # lighting varies between stills
        noisy = render.finish_frames(chunk, gains, rng).astype(np.float32)
        images[begin:begin + len(chunk)] = np.round(_downsample(noisy, scale)).astype(np.uint8)
    return images, captions, still_labels(stills)
