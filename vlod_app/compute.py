"""Cached calls into `vlod_core` for the pages: the same inputs never recompute.

`st.cache_data` keys on the hashable arguments; the pair and PIL images ride along as `_underscore`
arguments and are identified by the pair's spec and the image's content digest instead.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st
from PIL import Image

from vlod_core.geometry_batch import batch_geometry
from vlod_core.inspection import Inspection, inspect
from vlod_core.occlusion import OcclusionMap, occlusion_map
from vlod_core.pair import ModelPair, PairSpec
from vlod_core.sampling import GREEDY, SamplingConfig
from vlod_core.toy import world
from vlod_core.toy.source import examples

SAMPLES_SEED = 4242  # the built-in toy samples offered on page 1
N_SAMPLES = 8


@st.cache_data(max_entries=2, show_spinner=False)
def toy_samples(world_name: str = "default") -> list[world.Example]:
    """The samples page 1 offers: the toy world's (or the reasoning world's, its reference chains as answers)."""
    return examples(N_SAMPLES, SAMPLES_SEED, world_name)


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
    max_new_tokens: int | None = None,
) -> Inspection:
    """`inspect`; the answer decomposed is the typed `response`, else the student's greedy answer, else (with a
    `temperature`) a sample drawn with `seed`. `max_new_tokens` bounds every answer (None: the sampling
    config's default, which fits the default toy world's short answers)."""
    sampling = GREEDY if temperature is None else SamplingConfig(temperature=temperature)
    if max_new_tokens is not None:
        sampling = replace(sampling, max_new_tokens=max_new_tokens)
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
    world_name: str = "default",
    max_new_tokens: int | None = None,
) -> dict:
    """GradGeometry (as a dict) on the probe (if any) plus `toy_examples` samples of the toy world `world_name`,
    the student's answers bounded by `max_new_tokens` (None: `batch_geometry`'s default)."""
    drawn = examples(toy_examples, seed, world_name) if toy_examples else []
    images, questions = [ex.image() for ex in drawn], [ex.question for ex in drawn]
    if _image is not None and question:
        images, questions = [_image, *images], [question, *questions]
    length = {} if max_new_tokens is None else {"sampling": SamplingConfig(max_new_tokens=max_new_tokens)}
    return batch_geometry(_pair, images, questions, seed=seed, ablation=ablation, bins=bins, **length).to_dict()
