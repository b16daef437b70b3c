"""The embedded toy world: a procedural shapes VQA set, a word-level tokenizer and a tiny LLaVA pair trained on
the CPU. The core never imports it; the entry points (CLI, app, experiments, bench) hand it to the core: its
pair through `folders` (the spec name "toy" located, built on first use), its rows as a data source
(`toy.source`)."""

from __future__ import annotations

from collections.abc import Callable

from vlod_core.pair import TOY, PairSpec


def folders(spec: PairSpec, progress: Callable[[str, float], None] | None = None) -> tuple[str, str] | None:
    """The (teacher, student) folders `load_pair` should read for `spec`: the built toy pair's where the spec
    says "toy" (built first if missing), the spec's own elsewhere; None when the spec does not use the toy."""
    if TOY not in (spec.teacher, spec.student):
        return None
    from vlod_core.toy.build import ensure_toy_pair

    root = ensure_toy_pair(progress=progress)
    teacher = str(root / "teacher") if spec.teacher == TOY else spec.teacher
    student = str(root / spec.student_variant) if spec.student == TOY else spec.student
    return teacher, student
