"""Words of the generated demo corpus: shapes, colours, motions, scenes, sizes, and the captions.

Every attribute has a canonical name (stored in the hidden labels) and several surface forms
(synonyms), so the same event can be described in different words. An event "kind" is a
(shape, motion) pair; colour, size and scene are instance details. Used by prvr.demo.render
(what to draw), prvr.demo.synthetic and prvr.demo.pretraining_pairs (what to write); no I/O.

    rng = np.random.default_rng(0)
    event_caption({"shape": "square", "colour": "red", "motion": "left",
                   "scene": "grass", "size": "small"}, rng)
    # e.g. 'A crimson box slides left on the grass.'
"""
from __future__ import annotations

import functools

import numpy as np

# canonical shape -> surface forms
SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangular shape", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus sign", "plus shape"),
    "ring": ("ring", "hoop", "donut"),
    "bar": ("bar", "rectangle", "stick"),
}
# rotational symmetry order of each shape (a turn by 360 / order degrees looks the same); 0 = any
# turn looks the same, so "spin" is not drawn on those shapes
ROTATION_ORDER = {"circle": 0, "square": 4, "triangle": 3, "diamond": 2, "cross": 4, "ring": 0, "bar": 2}
ROTATION_INVARIANT = frozenset(shape for shape, order in ROTATION_ORDER.items() if order == 0)

# canonical colour -> (RGB, surface forms)
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((215, 40, 35), ("red", "crimson", "scarlet")),
    "green": ((40, 200, 60), ("green", "emerald", "bright green")),
    "blue": ((45, 75, 230), ("blue", "azure", "cobalt")),
    "yellow": ((245, 225, 40), ("yellow", "golden", "lemon")),
    "orange": ((250, 140, 25), ("orange", "tangerine", "amber")),
    "purple": ((145, 45, 200), ("purple", "violet", "lilac")),
    "white": ((250, 250, 250), ("white", "ivory", "pale")),
    "cyan": ((40, 215, 225), ("cyan", "turquoise", "teal")),
}

# canonical motion -> (finite verb phrase, gerund phrase) pairs; no shape or colour words in them,
# nor in the scene phrases, so a caption names each attribute once
MOTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "left": (("moves to the left", "moving to the left"), ("slides left", "sliding left"),
             ("drifts leftward", "drifting leftward")),
    "right": (("moves to the right", "moving to the right"), ("slides right", "sliding right"),
              ("drifts rightward", "drifting rightward")),
    "up": (("moves up", "moving up"), ("rises", "rising"), ("floats upward", "floating upward")),
    "down": (("moves down", "moving down"), ("falls", "falling"), ("sinks downward", "sinking downward")),
    "bounce": (("bounces", "bouncing"), ("hops", "hopping"),
               ("jumps repeatedly", "jumping repeatedly")),
    "grow": (("grows", "growing"), ("gets bigger", "getting bigger"), ("expands", "expanding")),
    "shrink": (("shrinks", "shrinking"), ("gets smaller", "getting smaller"), ("contracts", "contracting")),
    "spin": (("spins", "spinning"), ("rotates", "rotating"), ("turns around", "turning around")),
    "blink": (("blinks", "blinking"), ("flashes on and off", "flashing on and off"),
              ("flickers", "flickering")),
    "orbit": (("moves in a loop", "moving in a loop"), ("orbits", "orbiting"),
              ("goes round and round", "going round and round")),
    "shake": (("shakes", "shaking"), ("vibrates", "vibrating"), ("wobbles", "wobbling")),
}
# motions that change the size themselves: the instance's size word would contradict them
SIZE_CHANGING = frozenset({"grow", "shrink"})

# canonical scene -> (mean RGB used for the colour-contrast rule, phrases)
SCENES: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "grass": ((70, 135, 55), ("on the grass", "in a meadow", "on a grassy field")),
    "night": ((20, 25, 50), ("in the night sky", "against a dark starry sky", "at night")),
    "desert": ((205, 175, 115), ("in the desert", "over the sand", "on sand dunes")),
    "ocean": ((30, 90, 165), ("over the sea", "above the ocean", "on the water")),
    "brick": ((150, 70, 50), ("in front of a brick wall", "by a brick wall", "against a wall of bricks")),
    "snow": ((228, 232, 240), ("in the snow", "on a snowy field", "on snowy ground")),
    "sunset": ((205, 105, 95), ("at sunset", "under a sunset sky", "at dusk")),
    "room": ((110, 110, 112), ("in a tiled room", "on a checkered floor", "indoors on grey tiles")),
}

SIZES: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
# radius of the shape as a fraction of the frame side
SIZE_RADIUS = {"small": 0.13, "large": 0.2, "none": 0.16}

# how far (RGB distance) a shape's colour must be from the scene's mean colour to be visible
MIN_CONTRAST = 100.0
SIZE_NAMED_PROB = 0.35  # share of event captions that name the size

KINDS: tuple[tuple[str, str], ...] = tuple(
    (shape, motion) for shape in SHAPES for motion in MOTIONS
    if not (motion == "spin" and shape in ROTATION_INVARIANT))


def kind_name(shape: str, motion: str) -> str:
    """The label of an event kind, e.g. 'square/left'."""
    return f"{shape}/{motion}"


@functools.lru_cache(maxsize=None)
def visible_colours(scene: str) -> tuple[str, ...]:
    """Colours that stand out against `scene` (canonical names, vocabulary order)."""
    mean = np.array(SCENES[scene][0], dtype=float)
    return tuple(name for name, (rgb, _) in COLOURS.items()
                 if np.linalg.norm(np.array(rgb, dtype=float) - mean) >= MIN_CONTRAST)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(attrs: dict, rng: np.random.Generator, with_size: bool) -> str:
    """'small crimson box' / 'purple ball' (without article): colour and shape always."""
    words = [_pick(rng, SIZES[attrs["size"]])] if with_size and attrs["size"] in SIZES else []
    words += [_pick(rng, COLOURS[attrs["colour"]][1]), _pick(rng, SHAPES[attrs["shape"]])]
    return " ".join(words)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "."


def event_caption(attrs: dict, rng: np.random.Generator) -> str:
    """One natural caption of an event, in one of five templates and random synonyms.

    attrs: canonical "shape", "colour", "motion", "scene", "size" (size may be "none").
    Shape, colour, motion and scene are always named (the text side cannot encode what a caption
    does not say), the size sometimes (SIZE_NAMED_PROB).
    """
    noun = _noun_phrase(attrs, rng, with_size=rng.random() < SIZE_NAMED_PROB)
    verb, gerund = _pick(rng, MOTIONS[attrs["motion"]])
    scene = _pick(rng, SCENES[attrs["scene"]][1])
    template = int(rng.integers(5))
    if template == 0:
        text = f"{_article(noun)} {noun} {verb} {scene}"
    elif template == 1:
        text = f"the {noun} {verb} {scene}"
    elif template == 2:
        text = f"{scene}, {_article(noun)} {noun} {verb}"
    elif template == 3:
        text = f"there is {_article(noun)} {noun} {gerund} {scene}"
    else:
        text = f"we see {_article(noun)} {noun} that {verb} {scene}"
    return _sentence(text)


POSITION_WORDS = {
    (0, 0): "in the top left", (0, 1): "at the top", (0, 2): "in the top right",
    (1, 0): "on the left", (1, 1): "in the centre", (1, 2): "on the right",
    (2, 0): "in the bottom left", (2, 1): "at the bottom", (2, 2): "in the bottom right",
}
