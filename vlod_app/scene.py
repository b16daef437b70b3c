"""The scene builder's glue: a composed toy scene as the session's probe, and its grid of cell pickers.

A scene is drawn by the toy world's own renderer (`vlod_core.toy.scenes`), so the image is exactly the
64×64 input the toy pair was trained on. Each cell of the 4×4 grid is one selectbox (nothing, or a colour and
a shape); its widget state is written from the scene before the grid is drawn, so a link or a new scene
fills the grid, and an edit calls back before the page runs again, so the whole page shows the new scene.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from vlod_app.state import Probe, get_probe, image_digest, set_probe
from vlod_core.toy.scenes import decode_scene, encode_scene, grammar_notes, scene_image
from vlod_core.toy.world import COLOURS, GRID, SHAPES, SceneObject

LABEL = "built scene"
DEFAULT_SCENE = "r1c1-circle-red,r2c2-square-blue"
SYMBOLS = {"circle": "●", "square": "■", "triangle": "▲", "cross": "✚"}
OPTIONS = ["", *(f"{shape}-{colour}" for colour in COLOURS for shape in SHAPES)]
SHOWN_FOR = "scene_shown"  # the scene text the grid's widgets were last written from


def cell_key(row: int, col: int) -> str:
    return f"scene_cell_{row}_{col}"


def option_label(option: str) -> str:
    if not option:
        return "—"
    shape, colour = option.split("-")
    return f"{colour} {SYMBOLS[shape]}"


def scene_probe(objects, question: str, world: str = "default") -> Probe:
    """A composed scene as the session's probe (its image drawn by the toy world's renderer), asked `question`
    as a question of the toy world `world` (the reasoning world's scenes are asked its chain questions)."""
    image = scene_image(objects)
    notes = tuple(grammar_notes(objects))
    return Probe(image, LABEL, image_digest(image), question, "scene", notes, scene=encode_scene(objects), world=world)


def probe_objects(probe: Probe) -> tuple[SceneObject, ...]:
    return decode_scene(probe.scene or "")


def _write_cells(text: str) -> None:
    cells = {(o.row, o.col): f"{o.shape}-{o.colour}" for o in decode_scene(text)}
    for row in range(GRID):
        for col in range(GRID):
            st.session_state[cell_key(row, col)] = cells.get((row, col), "")
    st.session_state[SHOWN_FOR] = text


def cells_objects() -> tuple[SceneObject, ...]:
    """The scene the grid's widgets hold now."""
    objects = []
    for row in range(GRID):
        for col in range(GRID):
            value = st.session_state.get(cell_key(row, col)) or ""
            if value:
                shape, colour = value.split("-")
                objects.append(SceneObject(shape, colour, row, col))
    return tuple(objects)


def scene_grid(on_edit: Callable[[], None]) -> None:
    """The 4×4 grid of cell pickers for the session's scene; `on_edit` runs when one cell changes."""
    probe = get_probe()
    if st.session_state.get(SHOWN_FOR) != probe.scene:
        _write_cells(probe.scene or "")
    for row in range(GRID):
        for col, column in enumerate(st.columns(GRID, gap="small")):
            column.selectbox(
                f"Row {row + 1}, column {col + 1}",
                OPTIONS,
                format_func=option_label,
                key=cell_key(row, col),
                label_visibility="collapsed",
                on_change=on_edit,
            )


def take_cells() -> tuple[Probe, Probe]:
    """After an edit: (the scene before it, the scene the grid holds now, now the session's probe)."""
    old = get_probe()
    new = scene_probe(cells_objects(), old.question, old.world)
    set_probe(new)
    st.session_state[SHOWN_FOR] = new.scene
    return old, new


def starting_scene(current: Probe | None, samples) -> str:
    """A new builder starts from the toy sample on screen, else from a small default scene."""
    if current is not None and current.source == "scene" and current.scene is not None:
        return current.scene
    if current is not None and current.source == "toy":
        number = int(current.label.rsplit(" ", 1)[-1])
        return encode_scene(samples[number - 1].objects)
    return DEFAULT_SCENE
