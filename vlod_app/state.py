"""The session's model pair and probe image, the cached pair loader, and how errors reach the user.

Models load once per `PairSpec` (`st.cache_resource`, a frozen config as key, at most two pairs kept) and
are shared by every session; nothing in the app writes to them (training runs on a copy in `distill`).
What a session has chosen — the pair spec and the probe (image + question) — lives in session state
under keys that are not widget keys, so it survives moving between pages.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import streamlit as st
import torch
from PIL import Image

from vlod_core.grounding import DEFAULT_ROWS, GroundingReport, check_pair
from vlod_core.images import ImageError
from vlod_core.memory import estimate_training_memory
from vlod_core import toy
from vlod_core.pair import TOY, ModelPair, PairError, PairSpec, load_pair
from vlod_core.presets import PRESETS as REAL_PAIRS
from vlod_core.presets import preset_configs
from vlod_core.results import RunCardError

logger = logging.getLogger(__name__)

SPEC_KEY = "vlod_pair_spec"
PROBE_KEY = "vlod_probe"
T = TypeVar("T")

# (label, student Hub id, teacher Hub id): same tokenizer within each family
# Label -> (student id, teacher id), from vlod_core.presets (published configs, memory estimate, where it runs).
PRESETS = {f"{p.student.split('/')[1]} ← {p.teacher.split('/')[1]}": (p.student, p.teacher) for p in REAL_PAIRS}
PRESET_SHAPE = {"batch": 8, "lengths": (320, 128)}  # 8 answers of 128 tokens after a 448x448-image prompt


@st.cache_data(max_entries=1)
def preset_memory_lines() -> list[str]:
    """One line per preset: what distilling it needs (vlod_core.memory's estimate) and where it runs."""
    lines = []
    for label, preset in zip(PRESETS, REAL_PAIRS):
        teacher, student = preset_configs(preset.key)
        dtype = torch.float32 if preset.dtype == "float32" else torch.bfloat16
        estimate = estimate_training_memory(
            teacher, student, dtype, lora_rank=preset.lora_rank,
            gradient_checkpointing=preset.gradient_checkpointing, **PRESET_SHAPE,
        )  # fmt: skip
        lora = f", LoRA rank {preset.lora_rank}" if preset.lora_rank else ""
        lines.append(f"{label}: about {estimate.total / 2**30:.0f} GiB ({preset.dtype}{lora}); {preset.where}")
    return lines


USER_ERRORS = (PairError, ImageError, RunCardError, ValueError)
SMALL_MODEL_PARAMETERS = 50_000_000  # teacher + student; below this, one intra-op thread is fastest
DEFAULT_THREADS = torch.get_num_threads()


# ------------------------------------------------------------------------------------------------ errors


def shown(action: str, fn: Callable[..., T], *args, **kwargs) -> T | None:
    """Call `fn`; on failure show one `st.error` line (never a traceback) and return None."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as error:
        st.error(f"{action}: {error}")
    except Exception as error:  # the user sees one line; the log keeps the traceback
        logger.exception("%s failed", action)
        st.error(f"{action} failed: {type(error).__name__}: {error}")
    return None


# ------------------------------------------------------------------------------------------------ pair


def current_spec() -> PairSpec:
    return st.session_state.get(SPEC_KEY, PairSpec())


def set_spec(spec: PairSpec) -> None:
    st.session_state[SPEC_KEY] = spec


def uses_toy(spec: PairSpec) -> bool:
    """Whether either model is a toy world's (the default pair's or the reasoning pair's)."""
    return spec.teacher in toy.WORLDS or spec.student in toy.WORLDS


def describe(spec: PairSpec) -> str:
    variant = "blind student" if spec.student_variant == "student_blind" else "student"
    if spec.teacher == TOY and spec.student == TOY:
        return f"toy pair ({variant} ← teacher)"
    if spec.teacher == toy.TOY_REASONING and spec.student == toy.TOY_REASONING:
        return f"toy reasoning pair ({variant} ← teacher)"
    return f"{spec.student} ← {spec.teacher}"


@st.cache_resource(max_entries=2, show_spinner=False)
def cached_pair(spec: PairSpec) -> ModelPair:
    """One loaded pair per spec, shared by all sessions. Failures raise and are not cached."""
    return load_pair(spec, toy.folders(spec))


@st.cache_resource(max_entries=2, show_spinner=False)
def cached_grounding(spec: PairSpec) -> GroundingReport:
    """Whether each model of the cached pair reads the image (`vlod_core.grounding`), once per pair."""
    from vlod_core.toy.source import held_out_rows  # scenes any VLM can be asked about

    return check_pair(cached_pair(spec), held_out_rows(DEFAULT_ROWS, toy.world_of(spec)), log=False)


def toy_root(spec: PairSpec | None = None):
    """The folder of the toy pair `spec` uses (the default world's unless it names the reasoning pair)."""
    from vlod_core.toy.build import default_toy_dir

    if spec is not None and toy.world_of(spec) == "reasoning":
        from vlod_core.toy.reasoning_build import default_reasoning_dir

        return default_reasoning_dir()
    return default_toy_dir()


def toy_ready(spec: PairSpec) -> bool:
    """True when `spec` needs no toy build; else starts the server's build of its world (once) and returns False."""
    from vlod_app.server import toy_builds
    from vlod_core.toy.build import is_built

    if not uses_toy(spec) or is_built(toy_root(spec)):
        return True
    toy_builds().ensure(toy_root(spec), toy.world_of(spec))
    return False


def set_threads_for(pair: ModelPair) -> None:
    """One intra-op thread for small CPU models, the machine's default otherwise.

    A toy-sized model gains nothing from splitting each tiny matrix product over threads, and on a busy
    machine the OpenMP threads wait for each other: one `inspect` measured 1.1 s with two threads and
    0.05 s with one, a 60-step toy run 130 s against 6 s. `torch.set_num_threads` is process-wide, so
    this follows the pair the latest page run uses.
    """
    small = pair.device.type == "cpu" and _parameters(pair) < SMALL_MODEL_PARAMETERS
    wanted = 1 if small else DEFAULT_THREADS
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def _parameters(pair: ModelPair) -> int:
    return sum(p.numel() for model in (pair.teacher, pair.student) for p in model.parameters())


def worker_threads(pair: ModelPair, concurrent: int) -> int:
    """Intra-op threads for a training worker: one for small CPU models, else a fair share of the cores."""
    small = pair.device.type == "cpu" and _parameters(pair) < SMALL_MODEL_PARAMETERS
    return 1 if small else max(1, DEFAULT_THREADS // max(concurrent, 1))


def check_and_load(spec: PairSpec) -> ModelPair:
    """Load the spec through the cache (the toy pair must be built: see `toy_ready`)."""
    with st.spinner(f"Loading and checking {describe(spec)}…"):
        pair = cached_pair(spec)
    set_threads_for(pair)
    return pair


def get_pair() -> ModelPair:
    """The session's pair, loaded on first use; stops the page while the toy pair is built, or on failure."""
    spec = current_spec()
    if not toy_ready(spec):
        st.info("This page opens as soon as the toy pair is built (progress at the top; it keeps going if you leave).")
        st.stop()
    pair = shown(f"Loading {describe(spec)}", check_and_load, spec)
    if pair is None:
        st.info("Choose another pair on the home page.")
        st.stop()
    return pair


# ------------------------------------------------------------------------------------------------ probe


@dataclass
class Probe:
    """The image and question the session is looking at; pages 2 and 3 reuse it."""

    image: Image.Image
    label: str  # e.g. "toy sample 3" or the uploaded file's name
    digest: str  # content hash: keys the caches
    question: str
    source: str  # "toy", "scene" (built in the scene builder) or "upload"
    notes: tuple[str, ...] = ()
    reference: str | None = None  # the right answer, for toy samples asked their own question
    scene: str | None = None  # a built scene's text (`vlod_core.toy.scenes`), which a link carries
    world: str = "default"  # the toy world of a toy sample (its image and question are that world's)


def image_digest(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()[:16]


def get_probe() -> Probe | None:
    return st.session_state.get(PROBE_KEY)


def set_probe(probe: Probe) -> None:
    st.session_state[PROBE_KEY] = probe


def set_question(question: str) -> None:
    probe = get_probe()
    if probe is not None and probe.question != question:
        st.session_state[PROBE_KEY] = replace(probe, question=question, reference=None)
