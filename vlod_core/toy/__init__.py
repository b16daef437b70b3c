"""The embedded toy world: a procedural shapes VQA set, a word-level tokenizer and a tiny LLaVA pair trained on
the CPU. The core never imports it; the entry points (CLI, app, experiments, bench) hand it to the core: its
pair through `folders` (the spec name "toy" located, built on first use), its rows as a data source
(`toy.source`)."""

from __future__ import annotations

from types import MappingProxyType

from collections.abc import Callable

from vlod_core.pair import TOY, PairSpec


TOY_REASONING = "toy-reasoning"  # the spec name of the reasoning world's pair (`toy.reasoning`)
WORLDS = MappingProxyType({TOY: "default", TOY_REASONING: "reasoning"})  # spec name -> toy world


def world_of(spec: PairSpec) -> str:
    """The toy world whose rows and answer settings go with `spec`: "reasoning" where it names the reasoning pair,
    else "default" (a real pair is asked the default world's questions, as the entry points do)."""
    return WORLDS[TOY_REASONING] if TOY_REASONING in (spec.teacher, spec.student) else WORLDS[TOY]


def folders(spec: PairSpec, progress: Callable[[str, float], None] | None = None) -> tuple[str, str] | None:
    """The (teacher, student) folders `load_pair` should read for `spec`: the built toy pair's where the spec
    says "toy" or "toy-reasoning" (built first if missing), the spec's own elsewhere; None when the spec does
    not use a toy pair."""
    if spec.teacher not in WORLDS and spec.student not in WORLDS:
        return None
    from vlod_core.toy.build import ensure_toy_pair

    def folder(name: str, variant: str) -> str:
        return str(ensure_toy_pair(progress=progress, world=WORLDS[name]) / variant) if name in WORLDS else name

    return folder(spec.teacher, "teacher"), folder(spec.student, spec.student_variant)
