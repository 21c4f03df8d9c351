"""Scenes follow their captions, and the checker can tell."""
import random

import pytest

from modalities.image.scenes import Scene, Thing, check, draw, parse_caption, random_scene


def test_checker_accepts_the_scenes_drawn_from_captions():
    rng = random.Random(0)
    scores = []
    for _ in range(200):
        scene = random_scene(rng)
        assert parse_caption(scene.caption) == scene
        scores.append(check(draw(scene, rng), scene.caption)["all"])
    assert sum(scores) / len(scores) > 0.97


def test_checker_rejects_wrong_captions():
    rng = random.Random(1)
    scene = Scene((Thing("circle", "red", "small"), Thing("square", "blue", "large")), "above")
    img = draw(scene, rng)
    assert check(img, scene.caption)["all"]
    assert not check(img, "a small red circle below a large blue square")["relation"]
    assert not check(img, "a small green circle above a large blue square")["0.color"]
    assert not check(img, "a small red triangle above a large blue square")["0.shape"]
    assert not check(img, "a large red circle above a large blue square")["0.size"]


def test_parse_caption_refuses_other_text():
    with pytest.raises(ValueError, match="not a scene caption"):
        parse_caption("a cat on a mat")
