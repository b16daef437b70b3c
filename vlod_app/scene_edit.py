"""A counterfactual edit on page 1: after asking about a built scene, editing a cell asks the same question
about the edited scene, and the page shows both scenes' answers side by side and each token's visual term on
both images (the edit moves it only where the teacher reads the edited object and the student does not follow).

`Asked` is what was last asked (kept in session state and the URL); `Before` the scene before the last edit
with what was asked about it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import streamlit as st

from vlod_app.compute import inspect_cached
from vlod_app.scene import probe_objects, scene_probe
from vlod_app.state import Probe, shown
from vlod_app.widgets import View, diff_markdown, result_anchor, show_image
from vlod_core.figures.tokens import visual_term_change
from vlod_core.pair import PairSpec
from vlod_core.toy.scenes import decode_scene, scene_changes

SCORED = ("the teacher's answer before the edit", "the answer decomposed below")


@dataclass(frozen=True)
class Asked:
    """What was last asked, successfully: the page shows its result while the image is the same."""

    digest: str
    question: str
    seed: int = 0
    ablation: str = "remove"
    temperature: float | None = None  # None: decompose the greedy answer
    answer: str | None = None  # a typed answer to decompose instead
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Before:
    """The scene before the last edit and what was asked about it: the other half of a counterfactual."""

    scene: str
    asked: Asked


def inspect_asked(action: str, pair, spec: PairSpec, probe: Probe, asked: Asked, length: int | None):
    """What was asked, about `probe`'s image, through the server's cache: the four answers and the decomposed one;
    None (and one error line under `action`) on failure."""
    return shown(
        action,
        inspect_cached,
        pair,
        spec,
        probe.digest,
        probe.image,
        asked.question,
        asked.answer,
        asked.ablation,
        asked.seed,
        asked.temperature,
        max_new_tokens=length,
    )


def show_edit(
    view: View,
    pair,
    spec: PairSpec,
    asked: Asked,
    probe: Probe,
    inspection,
    before: Before | None,
    world_name: str,
    length: int | None,
    titles: dict[str, str],
) -> Before | None:
    """The scene before the last edit beside the edited one: the same question's four answers on both, and one
    answer's visual term per token on both images. None (nothing drawn) when `before` is not the same question
    about this scene before an edit, or when asking about it failed."""
    if before is None or probe.source != "scene" or replace(before.asked, digest=asked.digest) != asked:
        return None  # not the same question about the scene before an edit
    before_probe = scene_probe(decode_scene(before.scene), asked.question, world_name)
    earlier = inspect_asked("Asking about the scene before the edit", pair, spec, before_probe, asked, length)
    if earlier is None:
        return None
    scored = SCORED[0] if st.session_state.get("scene_scored", SCORED[0]) == SCORED[0] else SCORED[1]
    text = earlier.answers["teacher_image"] if scored == SCORED[0] else inspection.response
    # one answer scored on both images: the same tokens, so their visual terms compare one to one
    both = [
        shown(
            "Scoring the answer on both scenes",
            inspect_cached,
            pair,
            spec,
            image_probe.digest,
            image_probe.image,
            asked.question,
            text,
            asked.ablation,
            asked.seed,
        )
        for image_probe in (before_probe, probe)
    ]
    if None in both:
        return None
    changes = scene_changes(probe_objects(before_probe), probe_objects(probe))
    result_anchor("edit").subheader("Before the edit → after")
    st.caption(f"Edited: {'; '.join(changes)}. The same question, asked about both scenes.")
    old_col, new_col, answers_col = st.columns([1, 1, 3], gap="medium")
    show_image(before_probe.image, "before", old_col, width=128)
    show_image(probe.image, "after", new_col, width=128)
    with answers_col:
        for key, title in titles.items():
            old, new = earlier.answers[key], inspection.answers[key]
            st.markdown(f"{title}: {old or '(nothing)'} → {diff_markdown(old, new)}")
    st.radio("Answer scored on both scenes", SCORED, key="scene_scored", horizontal=True)
    rows_before, rows_after = (result.decomposition.rows(0) for result in both)
    view.chart(visual_term_change(rows_before, rows_after), "visual term before and after")
    st.caption(
        f"**{text or '(end of turn only)'}** scored on both scenes. Each token's visual term is student PMI − "
        "teacher PMI: it moves where the edit changes what the teacher reads from the image and the student does "
        "not follow; tokens that do not depend on the edited object stay put."
    )
    return before
