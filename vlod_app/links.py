"""The view in the URL: each page's inputs as query parameters, so a reload or a shared link reopens it.

A page reads its parameters once per script run (`Params`: each value checked, a bad one ignored with a
note saying so), decides what it shows, then writes exactly those inputs back (`write_view`), so the URL
always describes the view on screen. The pair travels on every page: nothing for the default toy pair,
`pair=toy-blind` for the blind student, `pair=toy-reasoning` for the reasoning world's pair, `student=…&teacher=…`
for any other pair (loaded with the safe
defaults: a link never turns on remote code). An uploaded image cannot travel in a link; `image=upload`
says one was used.
"""

from __future__ import annotations

import math
import urllib.parse

import streamlit as st

from vlod_core.pair import TOY, PairError, PairSpec
from vlod_core.toy import TOY_REASONING

BLIND = "toy-blind"
TOY_PAIRS = {  # a link's `pair=` -> the pair it names
    TOY: PairSpec(),
    BLIND: PairSpec(student_variant="student_blind"),
    TOY_REASONING: PairSpec(teacher=TOY_REASONING, student=TOY_REASONING),
}
WRITTEN_KEY = "vlod_url_written"  # the parameters this session last wrote
EARLIER_KEY = "vlod_url_written_before"  # and the ones it wrote before those


def pair_params(spec: PairSpec) -> dict[str, str]:
    def models(s: PairSpec) -> tuple[str, str, str]:
        return s.teacher, s.student, s.student_variant

    for name, toy_spec in TOY_PAIRS.items():
        if models(spec) == models(toy_spec):
            return {} if name == TOY else {"pair": name}
    return {"student": spec.student, "teacher": spec.teacher}


def spec_from_params() -> tuple[PairSpec | None, str | None]:
    """(the pair a link names, None) or (None, why the link's pair was ignored) or (None, None) if none."""
    params = st.query_params
    if "pair" in params:
        if params["pair"] in TOY_PAIRS:
            return TOY_PAIRS[params["pair"]], None
        names = ", ".join(f"`{name}`" for name in TOY_PAIRS)
        return None, f"`pair={params['pair']}` in the link is not one of {names}; it was ignored"
    student, teacher = params.get("student", "").strip(), params.get("teacher", "").strip()
    if student or teacher:
        if not (student and teacher):
            return None, "a link that names a pair needs both `student` and `teacher`; it was ignored"
        try:
            return PairSpec(teacher=teacher, student=student), None
        except PairError as error:
            return None, f"the link's pair was ignored: {error}"
    return None, None


class Params:
    """This run's query parameters, each read through a checked getter; bad ones are noted and skipped."""

    def __init__(self):
        self.raw = st.query_params.to_dict()
        self.problems: list[str] = []

    def _bad(self, name: str, why: str) -> None:
        self.problems.append(f"`{name}={self.raw[name]}` in the link was ignored: {why}")

    def integer(self, name: str, low: int, high: int) -> int | None:
        if name not in self.raw:
            return None
        try:
            value = int(self.raw[name])
        except ValueError:
            self._bad(name, "not a whole number")
            return None
        if not low <= value <= high:
            self._bad(name, f"it must be between {low} and {high}")
            return None
        return value

    def number(self, name: str, low: float, high: float) -> float | None:
        if name not in self.raw:
            return None
        try:
            value = float(self.raw[name])
        except ValueError:
            self._bad(name, "not a number")
            return None
        if not (math.isfinite(value) and low <= value <= high):
            self._bad(name, f"it must be between {low:g} and {high:g}")
            return None
        return value

    def choice(self, name: str, options) -> str | None:
        if name not in self.raw:
            return None
        if self.raw[name] not in options:
            self._bad(name, f"it must be one of {', '.join(map(str, options))}")
            return None
        return self.raw[name]

    def choices(self, name: str, options) -> list[str] | None:
        if name not in self.raw:
            return None
        values = [v for v in self.raw[name].split(",") if v]
        wrong = [v for v in values if v not in options]
        if wrong or not values:
            self._bad(name, f"each must be one of {', '.join(map(str, options))}")
            return None
        return values

    def text(self, name: str, max_chars: int = 500) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if len(value) > max_chars:
            self._bad(name, f"longer than {max_chars} characters")
            return None
        return value

    def flag(self, name: str) -> bool | None:
        return self.choice(name, ("0", "1")) == "1" if name in self.raw else None

    def show_problems(self) -> None:
        for problem in self.problems:
            st.warning(problem)


def _encode(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def view_params(values: dict, spec: PairSpec) -> dict[str, str]:
    """The query parameters of a view: the pair's, then `values` without the Nones, as text."""
    return pair_params(spec) | {k: _encode(v) for k, v in values.items() if v is not None}


def from_link() -> bool:
    """Whether the URL is a link, a reload or a typed URL to adopt: neither the parameters this session last
    wrote nor the ones before them. A widget changed right after a run wrote the URL reruns with the URL the
    browser had before that write when the write has not reached it yet (a busy server): that URL is stale, not
    a link, and adopting it dropped what had just been asked (issue 21's scene edit under load)."""
    state = st.session_state
    return st.query_params.to_dict() not in (state.get(WRITTEN_KEY), state.get(EARLIER_KEY))


def write_view(values: dict, spec: PairSpec) -> dict[str, str]:
    """Make the URL say exactly this view (and nothing else); returns its parameters."""
    wanted = view_params(values, spec)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    state = st.session_state
    if state.get(WRITTEN_KEY) != wanted:
        state[EARLIER_KEY] = state.get(WRITTEN_KEY)
    state[WRITTEN_KEY] = wanted
    return wanted


def view_link(params: dict[str, str]) -> str:
    """The full link to this page with `params` (a relative one when the browser's URL is unknown)."""
    base = st.context.url or ""
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    return f"{base}?{query}" if query else (base or "?")
