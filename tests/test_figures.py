"""Figure builders: they draw what the results say (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlod_core import figures
from vlod_core.topk import DISTRIBUTIONS, NextTokens


def _row(token, lang, vis, std=0.5, vds=0.2, lr_lang=0.1, lr_vis=-0.3):
    return {
        "token": token,
        "id": 0,
        "std_kl": std,
        "lang_kl": lang,
        "vis_kl": vis,
        "vds": vds,
        "logratio": lr_lang + lr_vis,
        "logratio_lang": lr_lang,
        "logratio_vis": lr_vis,
    }


ROWS = [_row("it", 0.3, 0.1), _row("is", 1e-6, 2e-6), _row("red", 0.1, 0.9)]


def _geometry_block(vectors: dict[str, np.ndarray]) -> dict:
    def angle(a, b):
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        return math.degrees(math.acos(max(-1, min(1, cos))))

    return {
        "norms": {k: float(np.linalg.norm(v)) for k, v in vectors.items()},
        "angles": {
            f"{a}-{b}": angle(vectors[a], vectors[b]) for a, b in (("std", "lang"), ("std", "vis"), ("lang", "vis"))
        },
    }


def test_token_strip_colours_by_visual_share_and_hovers_the_top_tokens():
    top = [{key: [("red", 0.7), ("blue", 0.2)] for key in DISTRIBUTIONS} for _ in ROWS]
    fig = figures.token_strip(ROWS, NextTokens([r["token"] for r in ROWS], top))
    strip = fig.data[0]
    assert list(strip.text[0]) == ["it", "is", "red"]
    assert strip.z[0][0] == pytest.approx(0.25) and strip.z[0][2] == pytest.approx(0.9)
    assert strip.z[0][1] == 0.5  # nothing to split: neutral, and said so
    assert "too small to split" in strip.hovertext[0][1]
    assert "teacher, no image: red 0.70, blue 0.20" in strip.hovertext[0][0]
    assert "log-ratio -0.200 = language +0.100 + visual -0.300" in strip.hovertext[0][0]


def test_logratio_split_stacks_parts_that_sum_to_the_marker():
    fig = figures.logratio_split(ROWS)
    lang, vis, total = fig.data
    assert fig.layout.barmode == "relative"
    assert np.allclose(np.add(lang.y, vis.y), total.y)


def test_plane_coordinates_reproduce_angles_norms_and_the_vgs_scale():
    rng = np.random.default_rng(0)
    std, vis = rng.normal(size=5), rng.normal(size=5)
    lang = 0.3 * std - 0.8 * vis + 0.5 * rng.normal(size=5)  # partly out of the std-vis plane
    block = _geometry_block({"std": std, "lang": lang, "vis": vis})
    coords = figures.plane_coordinates(block, gamma=2.0)
    assert np.linalg.norm(coords["std"]) == pytest.approx(np.linalg.norm(std))
    assert np.linalg.norm(coords["vis"]) == pytest.approx(np.linalg.norm(vis))
    # the in-plane part of gLang plus what sticks out is all of gLang
    assert np.linalg.norm(coords["lang"]) ** 2 + coords["lang_out_of_plane"] ** 2 == pytest.approx(lang @ lang)
    # its in-plane coordinates are its dot products with an orthonormal basis of span(gStd, gVis)
    e1 = std / np.linalg.norm(std)
    e2 = vis - (vis @ e1) * e1
    e2 /= np.linalg.norm(e2)
    assert coords["lang"] == pytest.approx([lang @ e1, lang @ e2])
    # η keeps the VGS update as long as gStd
    assert np.linalg.norm(coords["vgs"]) == pytest.approx(np.linalg.norm(std))
    assert coords["eta"] == pytest.approx(np.linalg.norm(std) / np.linalg.norm(std + 2 * vis))
    assert len(figures.vector_plane(block).data) == 4


def test_geometry_figures_draw_every_group_and_bin():
    block = _geometry_block(
        {"std": np.array([1.0, 0, 0]), "lang": np.array([0, 1.0, 0]), "vis": np.array([1.0, 1.0, 0])}
    )
    geometry = {
        "global": block,
        "groups": {"vision tower": block, "language layer 00": block},
        "bins": [block | {"vds_low": i, "vds_high": i + 1, "tokens": 3} for i in range(10)],
    }
    heat = figures.angles_by_group(geometry).data[0]
    assert list(heat.y) == ["vision tower", "language layer 00"]
    assert heat.z[0][0] == pytest.approx(90.0) and heat.z[0][1] == pytest.approx(45.0)
    lines = figures.angles_by_bin(geometry).data
    assert len(lines) == 6 and all(len(trace.x) == 10 for trace in lines)
    assert len(figures.norms_by_group(geometry).data) == 3


def test_training_curves_and_accuracy_bars_follow_the_records():
    record = {"step": 1, "std": 0.5, "lang": 0.2, "vis": 0.4, "eta": 0.4, "accuracy": None, "geometry": None}
    accuracy = {"accuracy_image": 0.6, "accuracy_no_image": 0.5}
    runs = {
        "standard": {"records": [record, record | {"step": 2}], "before": accuracy, "after": accuracy},
        "vgs": {"records": [record]},
    }
    fig = figures.training_curves(runs)
    std_trace = next(t for t in fig.data if t.name == "standard ℓStd")
    assert list(std_trace.x) == [1, 2]
    accuracy_trace = next(t for t in fig.data if t.name == "standard accuracy_image")
    assert list(accuracy_trace.x) == [0, 2]  # before at step 0, after at the last step
    assert any("not measured" in (a.text or "") for a in fig.layout.annotations)
    cards = {"standard": {"before": accuracy, "after": accuracy | {"accuracy_image": 0.8}}}
    before, after = figures.accuracy_bars(cards).data
    assert list(after.y) == [0.8, 0.5] and list(before.y) == [0.6, 0.5]


def test_word_diff_marks_removed_and_added_words():
    assert figures.word_diff("it is blue", "it is red") == [
        ("same", "it"),
        ("same", "is"),
        ("removed", "blue"),
        ("added", "red"),
    ]
    assert figures.word_diff("", "two shapes") == [("added", "two"), ("added", "shapes")]


def test_occlusion_figure_lays_the_map_over_the_image():
    from PIL import Image

    from vlod_core.occlusion import OcclusionMap

    occlusion = OcclusionMap(np.arange(16.0).reshape(4, 4) - 8, 0.5, "red", 2, (4, 4))
    fig = figures.occlusion_figure(Image.new("RGB", (64, 48)), occlusion)
    image, heat = fig.data
    assert image.type == "image" and heat.zmid == 0
    assert list(heat.x) == [8, 24, 40, 56] and list(heat.y) == [6, 18, 30, 42]


def test_decomposition_diagram_names_the_four_distributions_and_losses():
    text = " ".join(a.text for a in figures.decomposition_diagram().layout.annotations)
    for name in ("pI", "px", "qI", "qx", "q*", "ℓStd", "ℓLang", "ℓVis", "VDS"):
        assert name in text
