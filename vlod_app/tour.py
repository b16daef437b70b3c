"""A guided tour for first-time visitors: one short step per page, skippable, remembered per browser.

"Per browser" is a cookie (`vlod_tour=done`, a year, the whole site): Streamlit reads it on the server
(`st.context.cookies`) when a page loads, so a visitor who finished or skipped the tour does not see it
again after a reload, in a new tab or tomorrow, while a class's fresh browsers all do. Session state alone
would forget on reload, and a URL flag would travel with every shared link. The cookie is written by a
two-line script that runs in the page (`st.html(..., unsafe_allow_javascript=True)`); it holds no data
about the visitor. Within a session, session state remembers the choice at once.
"""

from __future__ import annotations

import streamlit as st

from vlod_app.words import TOUR

COOKIE = "vlod_tour"
DONE_KEY = "vlod_tour_done"
WRITE_KEY = "vlod_tour_cookie"  # a cookie value waiting to be written by the page's script
ONE_YEAR = 365 * 24 * 3600


def is_done() -> bool:
    if DONE_KEY in st.session_state:
        return st.session_state[DONE_KEY]
    return (st.context.cookies or {}).get(COOKIE) == "done"


def _set_done(done: bool) -> None:
    st.session_state[DONE_KEY] = done
    st.session_state[WRITE_KEY] = "done" if done else ""


def _write_cookie() -> None:
    value = st.session_state.pop(WRITE_KEY, None)
    if value is None:
        return
    age = ONE_YEAR if value else 0
    st.html(
        f"<script>document.cookie = '{COOKIE}={value}; max-age={age}; path=/; SameSite=Lax';</script>",
        unsafe_allow_javascript=True,
    )


def tour_box(page: str) -> None:
    """This page's tour step (if the tour is on), with its way on and a way out."""
    _write_cookie()
    if is_done():
        return
    steps = [step for step in TOUR if step[0] == page]
    if not steps:
        return
    number = TOUR.index(steps[0]) + 1
    _, text, next_page, label = steps[0]
    # an expander: closed, the step takes one line, so what it points at is in view on a 1280×720 projector
    with st.expander(f"Guided tour: step {number} of {len(TOUR)}", expanded=True, key=f"tour_{page}"):
        st.markdown(f"**Guided tour, step {number} of {len(TOUR)}.** {text}")
        row = st.container(horizontal=True, vertical_alignment="center")
        if next_page:
            row.page_link(next_page, label=label, icon=":material/arrow_forward:")
            row.button("Skip the tour", key="tour_skip", on_click=_set_done, args=(True,), type="tertiary")
        else:
            row.button(label, key="tour_finish", on_click=_set_done, args=(True,), type="primary")


def restart_button() -> None:
    """In the sidebar, once the tour is done: take it again."""
    if is_done():
        st.button("Take the guided tour", key="tour_restart", on_click=_set_done, args=(False,), type="tertiary")
