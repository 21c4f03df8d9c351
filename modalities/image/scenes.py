"""Captioned scenes drawn with Pillow, and a program that checks whether an image follows its caption.

A scene is one or two shapes (circle, square, triangle) in one of six colours, small or large; two shapes
stand in a relation (left of, right of, above, below). The caption says all of it, e.g. "a small red circle
above a large blue square". The checker finds each colour's pixels, then judges shape by how much of its
bounding box the region fills, size by its extent, and the relation by centroids.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
          "purple": (150, 60, 190), "orange": (245, 130, 30)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 14, "large": 26}
RELATIONS = ("left of", "right of", "above", "below")
BACKGROUND = (245, 245, 245)


@dataclass(frozen=True)
class Thing:
    shape: str
    color: str
    size: str

    def words(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    relation: str | None = None  # things[0] <relation> things[1]

    @property
    def caption(self) -> str:
        if len(self.things) == 1:
            return f"a {self.things[0].words()}"
        return f"a {self.things[0].words()} {self.relation} a {self.things[1].words()}"


def random_scene(rng: random.Random) -> Scene:
    count = rng.choice((1, 2, 2))
    colors = rng.sample(sorted(COLORS), count)  # distinct colours keep the checker unambiguous
    things = tuple(Thing(rng.choice(SHAPES), c, rng.choice(sorted(SIZES))) for c in colors)
    return Scene(things, rng.choice(RELATIONS) if count == 2 else None)


def parse_caption(caption: str) -> Scene:
    """The scene a caption describes (the inverse of Scene.caption); ValueError if it is not one."""
    words = caption.strip().lower().removeprefix("a ").split()
    def thing(ws):
        if len(ws) != 3 or ws[0] not in SIZES or ws[1] not in COLORS or ws[2] not in SHAPES:
            raise ValueError(f"not a scene caption: {caption!r} (e.g. 'a small red circle above a large blue square')")
        return Thing(ws[2], ws[1], ws[0])
    if len(words) == 3:
        return Scene((thing(words),))
    for rel in RELATIONS:
        r = rel.split()
        for i in range(3, len(words) - len(r)):
            if words[i : i + len(r)] == r and words[i + len(r)] == "a":
                return Scene((thing(words[:i]), thing(words[i + len(r) + 1 :])), rel)
    raise ValueError(f"not a scene caption: {caption!r} (e.g. 'a small red circle above a large blue square')")


def draw(scene: Scene, rng: random.Random) -> Image.Image:
    """The scene at random positions that satisfy its relation, with a little jitter in size."""
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    centres = place(scene, rng)
    for thing, (cx, cy) in zip(scene.things, centres):
        r = SIZES[thing.size] / 2 + rng.uniform(-1.5, 1.5)
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = COLORS[thing.color]
        if thing.shape == "circle":
            d.ellipse(box, fill=fill)
        elif thing.shape == "square":
            d.rectangle(box, fill=fill)
        else:
            d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    return img


def place(scene: Scene, rng: random.Random) -> list[tuple[float, float]]:
    margin = lambda t: SIZES[t.size] / 2 + 2
    if len(scene.things) == 1:
        m = margin(scene.things[0])
        return [(rng.uniform(m, SIZE - m), rng.uniform(m, SIZE - m))]
    a, b = scene.things
    while True:  # rejection sampling: non-overlapping, relation clearly true
        pa = (rng.uniform(margin(a), SIZE - margin(a)), rng.uniform(margin(a), SIZE - margin(a)))
        pb = (rng.uniform(margin(b), SIZE - margin(b)), rng.uniform(margin(b), SIZE - margin(b)))
        gap = margin(a) + margin(b) - 2
        dx, dy = pb[0] - pa[0], pb[1] - pa[1]
        ok = {"left of": dx > gap and abs(dy) < abs(dx), "right of": -dx > gap and abs(dy) < abs(dx),
              "above": dy > gap and abs(dx) < abs(dy), "below": -dy > gap and abs(dx) < abs(dy)}[scene.relation]
        if ok:
            return [pa, pb]


def regions(img: Image.Image) -> dict[str, np.ndarray]:
    """Pixels of each palette colour: {colour: bool mask}, by nearest palette colour among saturated pixels."""
    x = np.asarray(img.convert("RGB"), dtype=np.float32)
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    dist = ((x[:, :, None, :] - palette[None, None]) ** 2).sum(-1)  # [h, w, colours]
    nearest = dist.argmin(-1)
    saturated = (x.max(-1) - x.min(-1)) > 60
    close = dist.min(-1) < 90.0 ** 2
    return {c: (nearest == i) & saturated & close for i, c in enumerate(COLORS)}


def judge_shape(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = mask.sum() / box
    return "square" if fill > 0.9 else "circle" if fill > 0.66 else "triangle"


def check(img: Image.Image, caption: str) -> dict:
    """How well an image follows a caption: per-attribute verdicts and `all` (every attribute right)."""
    scene = parse_caption(caption)
    masks = regions(img)
    verdict: dict[str, bool] = {}
    centres = []
    for i, t in enumerate(scene.things):
        m = masks[t.color]
        found = m.sum() >= 20
        verdict[f"{i}.color"] = bool(found)
        verdict[f"{i}.shape"] = bool(found and judge_shape(m) == t.shape)
        ys, xs = np.nonzero(m) if found else (np.array([0]), np.array([0]))
        extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1  # small ~14 px, large ~26 px across
        verdict[f"{i}.size"] = bool(found and (extent > 20) == (t.size == "large"))
        centres.append((xs.mean(), ys.mean()))
    if scene.relation:
        (ax, ay), (bx, by) = centres
        verdict["relation"] = bool(verdict["0.color"] and verdict["1.color"] and {
            "left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[scene.relation])
    verdict["all"] = all(verdict.values())
    return verdict
