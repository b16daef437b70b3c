"""Cached calls into `vlod_core` for the pages: the same inputs never recompute.

`st.cache_data` keys on the hashable arguments; the pair and PIL images ride along as `_underscore`
arguments and are identified by the pair's spec and the image's content digest instead.
"""

from __future__ import annotations


import streamlit as st
from PIL import Image

from vlod_core.geometry_batch import batch_geometry
from vlod_core.inspection import Inspection, inspect
from vlod_core.occlusion import OcclusionMap, occlusion_map
from vlod_core.pair import ModelPair, PairSpec
from vlod_core.sampling import GREEDY, SamplingConfig
from vlod_core.toy import world

SAMPLES_SEED = 4242  # the built-in toy samples offered on page 1
N_SAMPLES = 8


@st.cache_data(max_entries=1, show_spinner=False)
def toy_samples() -> list[world.Example]:
    return world.sample_examples(N_SAMPLES, seed=SAMPLES_SEED)


@st.cache_data(max_entries=64, show_spinner=False)
def inspect_cached(
    _pair: ModelPair,
    spec: PairSpec,
    digest: str,
    _image: Image.Image,
    question: str,
    response: str | None,
    ablation: str,
    seed: int,
    temperature: float | None = None,
    k: int = 5,
) -> Inspection:
    """`inspect`; the answer decomposed is the typed `response`, else the student's greedy answer, else (with a
    `temperature`) a sample drawn with `seed`."""
    sampling = GREEDY if temperature is None else SamplingConfig(temperature=temperature)
    return inspect(_pair, _image, question, response, ablation, sampling, seed, top_k=k)


@st.cache_data(max_entries=64, show_spinner=False)
def occlusion_cached(
    _pair: ModelPair,
    spec: PairSpec,
    digest: str,
    _image: Image.Image,
    question: str,
    response_ids: tuple[int, ...],
    position: int,
    ablation: str,
    fill: str,
) -> OcclusionMap:
    return occlusion_map(_pair, _image, question, list(response_ids), position, ablation=ablation, fill=fill)


@st.cache_data(max_entries=32, show_spinner=False)
def geometry_cached(
    _pair: ModelPair,
    spec: PairSpec,
    digest: str | None,
    _image: Image.Image | None,
    question: str | None,
    toy_examples: int,
    seed: int,
    ablation: str,
    bins: int,
) -> dict:
    """GradGeometry (as a dict) on the probe (if any) plus `toy_examples` toy samples."""
    examples = world.sample_examples(toy_examples, seed=seed) if toy_examples else []
    images, questions = [ex.image() for ex in examples], [ex.question for ex in examples]
    if _image is not None and question:
        images, questions = [_image, *images], [question, *questions]
    return batch_geometry(_pair, images, questions, seed=seed, ablation=ablation, bins=bins).to_dict()
