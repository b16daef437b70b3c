"""Figure builders: they draw what the results say (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlod_core.figures import angles, style, tokens
from vlod_core.figures import runs as run_figures
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


ROWS_BY_SIZE = [_row("big", 0.9, 0.9), _row("even", 0.02, 0.02), _row("tiny", 2e-5, 3e-5), _row("lang", 0.3, 0.0)]


def test_token_strip_colours_by_visual_share_and_hovers_the_top_tokens():
    top = [{key: [("red", 0.7), ("blue", 0.2)] for key in DISTRIBUTIONS} for _ in ROWS]
    fig = tokens.token_strip(ROWS, NextTokens([r["token"] for r in ROWS], top))
    split, flat = fig.data
    assert list(split.x) == [0, 2] and list(split.text) == ["it", "red"]
    assert split.marker.color[0] == pytest.approx(0.25) and split.marker.color[1] == pytest.approx(0.9)
    assert "teacher, no image: red 0.70, blue 0.20" in split.hovertext[0]
    assert (
        "log-ratio -0.200 (student less sure than the teacher) = language +0.100 + visual -0.300" in split.hovertext[0]
    )
    # nothing to split: its own hatched trace, said so on hover
    assert list(flat.x) == [1] and flat.marker.pattern.shape == "/" and "nothing to split" in flat.hovertext[0]


def test_a_word_the_image_decides_is_underlined_even_when_its_mismatch_is_small():
    """Issue 21, item 7: "blue" about a blue circle (sample 5: VDS 2.56 nats, ℓLang 0.030, ℓVis 0.032) was a faint
    even-split box that read as language; the split is right (the student already agrees), the drawing hid
    that the image decides the word."""
    blue = _row("blue", 0.030, 0.032) | {"vds": 2.557}
    rows = [_row("it", 0.0, 0.0) | {"vds": 0.0}, blue]
    fig = tokens.token_strip(rows)
    marks = [s for s in fig.layout.shapes if s.fillcolor == style.VIS]
    assert [(m.x0 + m.x1) / 2 for m in marks] == [pytest.approx(1.0)]  # under "blue" only
    split = fig.data[0]
    assert "the image decides this word (VDS 2.56" in split.hovertext[list(split.text).index("blue")]
    assert "underline" in fig.layout.title.text


def test_token_strip_opacity_grows_with_the_mismatch_and_even_differs_from_nothing():
    split, flat = tokens.token_strip(ROWS_BY_SIZE).data
    opacity = dict(zip(split.text, split.marker.opacity))
    assert opacity["big"] == 1.0 and opacity["even"] < opacity["big"] and opacity["even"] > style.MIN_OPACITY
    share = dict(zip(split.text, split.marker.color))
    assert share["even"] == pytest.approx(0.5) and share["lang"] == 0.0
    # an even split is a solid mid colour; "nothing to split" is a separate, hatched, outlined box
    assert list(flat.text) == ["tiny"] and flat.marker.color == "white"
    assert tokens.strength(1e-6) == style.MIN_OPACITY and tokens.strength(5.0) == 1.0


def test_the_sign_of_the_log_ratio_in_words():
    assert tokens.logratio_words(0.8) == "student more sure than the teacher"
    assert tokens.logratio_words(-0.8) == "student less sure than the teacher"
    assert tokens.logratio_words(0.01) == "about as sure as the teacher"


def test_logratio_split_stacks_parts_that_sum_to_the_marker():
    fig = tokens.logratio_split(ROWS)
    lang, vis, total = fig.data
    assert fig.layout.barmode == "relative"
    assert np.allclose(np.add(lang.y, vis.y), total.y)


def test_plane_coordinates_reproduce_angles_norms_and_the_vgs_scale():
    rng = np.random.default_rng(0)
    std, vis = rng.normal(size=5), rng.normal(size=5)
    lang = 0.3 * std - 0.8 * vis + 0.5 * rng.normal(size=5)  # partly out of the std-vis plane
    block = _geometry_block({"std": std, "lang": lang, "vis": vis})
    coords = angles.plane_coordinates(block, gamma=2.0)
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
    assert len(angles.vector_plane(block).data) == 4


def test_geometry_figures_draw_every_group_and_bin():
    block = _geometry_block(
        {"std": np.array([1.0, 0, 0]), "lang": np.array([0, 1.0, 0]), "vis": np.array([1.0, 1.0, 0])}
    )
    geometry = {
        "global": block,
        "groups": {"vision tower": block, "language layer 00": block},
        "bins": [block | {"vds_low": i, "vds_high": i + 1, "tokens": 3} for i in range(10)],
    }
    heat = angles.angles_by_group(geometry).data[0]
    assert list(heat.y) == ["vision tower", "language layer 00"]
    assert heat.z[0][0] == pytest.approx(90.0) and heat.z[0][1] == pytest.approx(45.0)
    by_bin = angles.angles_by_bin(geometry)
    assert len(by_bin.data) == 6 and all(len(trace.x) == 10 for trace in by_bin.data)
    assert len(angles.norms_by_group(geometry).data) == 3
    # each bin's tick says its token count and VDS range; thin bins are shaded and named
    assert list(by_bin.layout.xaxis2.ticktext)[0] == "1<br>3 tok<br>0–1"
    assert angles.thin_bins(geometry["bins"]) == list(range(1, 11))
    assert sum(shape.type == "rect" for shape in by_bin.layout.shapes) == 2 * 10  # both panels, each thin bin
    assert f"under {style.FEW_TOKENS} tokens" in by_bin.layout.title.text
    assert angles.thin_bins([{"tokens": 40}, {"tokens": style.FEW_TOKENS - 1}]) == [2]


def test_training_curves_and_accuracy_bars_follow_the_records():
    record = {"step": 1, "std": 0.5, "lang": 0.2, "vis": 0.4, "eta": 0.4, "accuracy": None, "geometry": None}
    accuracy = {"accuracy_image": 0.6, "accuracy_no_image": 0.5}
    runs = {
        "standard": {"records": [record, record | {"step": 2}], "before": accuracy, "after": accuracy},
        "vgs": {"records": [record]},
    }
    fig = run_figures.training_curves(runs)
    std_trace = next(t for t in fig.data if t.name == "standard ℓStd")
    assert list(std_trace.x) == [1, 2]
    accuracy_trace = next(t for t in fig.data if t.name == "standard accuracy_image")
    assert list(accuracy_trace.x) == [0, 2]  # before at step 0, after at the last step
    assert any("not measured" in (a.text or "") for a in fig.layout.annotations)
    cards = {"standard": {"before": accuracy, "after": accuracy | {"accuracy_image": 0.8}}}
    before, after = run_figures.accuracy_bars(cards).data
    assert list(after.y) == [0.8, 0.5] and list(before.y) == [0.6, 0.5]


def test_accuracies_carry_a_standard_error_binomial_unless_the_card_gives_one():
    block = {"accuracy_image": 0.8, "accuracy_no_image": 0.5, "eval_rows": 100}
    assert run_figures.accuracy_se(block, "accuracy_image") == pytest.approx((0.8, 0.04))
    assert run_figures.accuracy_se(block | {"stderr": {"accuracy_image": 0.01}}, "accuracy_image") == (0.8, 0.01)
    assert run_figures.accuracy_se({"accuracy_image": 0.8, "n": 100}, "accuracy_image") == pytest.approx((0.8, 0.04))
    value, se = run_figures.accuracy_se({"accuracy_image": 0.8}, "accuracy_image")  # n unknown
    assert value == 0.8 and math.isnan(se)
    assert run_figures.accuracy_text(block, "accuracy_no_image") == "0.500 ± 0.050"
    assert run_figures.accuracy_text({"accuracy_image": float("nan")}, "accuracy_image") == "–"
    cards = {"vgs": {"before": block, "after": block | {"accuracy_image": 0.9}}}
    before, after = run_figures.accuracy_bars(cards).data
    assert list(after.error_y.array) == pytest.approx([0.03, 0.05]) and list(before.error_y.array)[0] == pytest.approx(
        0.04
    )
    runs = {"vgs": {"records": [{"step": 1, "std": 1, "lang": 1, "vis": 1, "eta": 1}], "before": block, "after": block}}
    curve = next(t for t in run_figures.training_curves(runs).data if t.name == "vgs accuracy_image")
    assert list(curve.error_y.array) == pytest.approx([0.04, 0.04])


def test_word_diff_marks_removed_and_added_words():
    assert run_figures.word_diff("it is blue", "it is red") == [
        ("same", "it"),
        ("same", "is"),
        ("removed", "blue"),
        ("added", "red"),
    ]
    assert run_figures.word_diff("", "two shapes") == [("added", "two"), ("added", "shapes")]


def test_occlusion_figure_draws_the_map_beside_the_image_in_its_own_colours():
    from PIL import Image

    from vlod_core.occlusion import OcclusionMap

    occlusion = OcclusionMap(np.arange(16.0).reshape(4, 4) - 8, 0.5, "red", 2, (4, 4))
    fig = tokens.occlusion_figure(Image.new("RGB", (64, 48)), occlusion)
    image, heat = fig.data
    assert image.type == "image" and heat.zmid == 0
    assert (image.xaxis or "x") == "x" and heat.xaxis == "x2", "the map sits beside the image, not over it"
    assert list(heat.x) == [8, 24, 40, 56] and list(heat.y) == [6, 18, 30, 42]
    # teacher-versus-student reliance uses neither the language blue nor the visual orange
    colours = {c for _, c in heat.colorscale}
    assert not colours & {style.LANG, style.VIS} and style.TEACHER_MORE in colours
    assert list(heat.colorbar.ticktext) == ["student relies more", "no change", "teacher relies more"]


def test_language_and_visual_keep_their_colours_everywhere():
    assert style.SHARE_SCALE[0][1] == style.LANG and style.SHARE_SCALE[-1][1] == style.VIS
    split = tokens.logratio_split(ROWS)
    assert split.data[0].marker.color == style.LANG and split.data[1].marker.color == style.VIS
    kls = {t.name.split()[0]: t.marker.color for t in tokens.kl_bars(ROWS).data}
    assert kls["language"] == style.LANG and kls["visual"] == style.VIS
    # angle maps do not reuse blue or orange for "agree" and "conflict"
    assert not {c for _, c in style.ANGLE_SCALE} & {style.LANG, style.VIS}


def test_no_rule_s_after_bar_is_grey_like_the_before_bars():
    """Issue 21, item 7: standard's "after" bar was dark grey, read as a "before" bar (grey)."""
    block = {"accuracy_image": 0.7, "accuracy_no_image": 0.3}
    cards = {rule: {"before": block, "after": block} for rule in style.RULE_COLOURS}
    before, after = run_figures.accuracy_bars(cards).data
    assert before.name == "before" and after.name == "after"

    def grey(colour: str) -> bool:
        red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return max(red, green, blue) - min(red, green, blue) < 24

    assert grey(before.marker.color)
    assert not any(grey(colour) for colour in after.marker.color), after.marker.color


def test_decomposition_diagram_names_the_four_distributions_and_losses():
    text = " ".join(a.text for a in tokens.decomposition_diagram().layout.annotations)
    for name in ("pI", "px", "qI", "qx", "q*", "ℓStd", "ℓLang", "ℓVis", "VDS"):
        assert name in text


def test_a_long_answer_wraps_into_lines_and_its_image_read_tokens_stand_out():
    """A 25-token chain: three lines of LINE_TOKENS boxes read in order; the one word the image decides keeps its
    full strength and an orange frame, every language token is muted however large its mismatch."""
    rows = [_row(f"w{t}", 2.0, 0.01, vds=0.0) for t in range(25)]
    rows[12] = _row("three", 0.05, 1.5, vds=0.8)
    split, flat = tokens.token_strip(rows).data
    assert len(flat.x) == 0 and split.base is not None
    lines, columns = [-b for b in split.base], list(split.x)
    assert max(lines) == 2 and max(columns) == style.LINE_TOKENS - 1  # wrapped: no box beyond the line's width
    order = sorted(zip(lines, columns, split.customdata, split.text))
    assert [text for *_, text in order] == [r["token"] for r in rows]  # read left to right, top to bottom
    opacity = dict(zip(split.text, split.marker.opacity))
    assert opacity["three"] == tokens.strength(1.55)
    assert all(value <= style.MUTED_OPACITY for text, value in opacity.items() if text != "three")
    frames = [s for s in tokens.token_strip(rows).layout.shapes if s.line.color == style.VIS]
    assert [((s.x0 + s.x1) / 2, s.y0) for s in frames] == [(pytest.approx(12 % style.LINE_TOKENS), -1)]
    font = dict(zip(split.text, split.textfont.color))
    assert font["three"] == "black" and font["w0"] != "black"
    # a short answer keeps the one-line strip
    assert tokens.token_strip(rows[: style.LINE_TOKENS]).data[0].base is None
