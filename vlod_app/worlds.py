"""What the session pair's toy world changes in the pages: its samples' questions, how long its answers may be,
how their final answers are read, and the questions a built scene is asked.

The default toy pair answers in two or three words, each its own final answer. The reasoning pair
(`vlod_core.toy.reasoning`) writes chains of 20 to 60 tokens, `<reason> … </reason> \\boxed{…}`, scored on the
boxed final answer; its lengths and pattern come from the world's run settings (`toy.source.world_settings`),
the same the CLI's `--world reasoning` uses, never from a number typed here.
"""

from __future__ import annotations

from vlod_core.answers import final_answer, normalise
from vlod_core.pair import PairSpec
from vlod_core.toy import world_of
from vlod_core.toy.source import world_settings

QUESTIONS = {  # what a new scene or an upload is asked first
    "default": "what color is the circle ?",
    "reasoning": "how many shapes are not red ?",
}


def world(spec: PairSpec) -> str:
    """The toy world whose samples, lengths and answer pattern go with `spec` (`vlod_core.toy.world_of`)."""
    return world_of(spec)


def answer_length(world_name: str) -> int | None:
    """The response length the world's answers need (None: the page's own default fits)."""
    return world_settings(world_name).get("max_new_tokens")


def answer_pattern(world_name: str) -> str | None:
    """How a final answer is read off the world's responses (None: the whole answer is the final answer)."""
    return world_settings(world_name).get("answer_pattern")


def default_question(world_name: str) -> str:
    return QUESTIONS[world_name]


def final_words(text: str, reference: str | None, pattern: str | None) -> str:
    """A card's line under a chain: its parsed final answer, and whether it is the reference's (markdown)."""
    got = final_answer(text, pattern)
    if got is None:
        return "final answer: none (the chain does not parse: a format error)"
    if reference is None:
        return f"final answer: **{got}**"
    wanted = final_answer(reference, pattern)
    right = got == (wanted if wanted is not None else normalise(reference))
    return f"final answer: **{got}** {'✓' if right else '✗'}"


def scene_reference(objects, question: str, world_name: str) -> str | None:
    """The reference answer to `question` about a built scene: the default world's short answer, or the reasoning
    teacher's chain; None when the question is none of the world's kinds or has no single answer there."""
    if world_name == "reasoning":
        from vlod_core.toy import reasoning

        asked = reasoning.question_from_text(tuple(objects), question)
        return None if asked is None else reasoning.chain(asked, "teacher").text
    from vlod_core.toy.scenes import reference_answer

    return reference_answer(objects, question)


def scene_questions(objects, world_name: str) -> list[str]:
    """Questions of the world's kinds that a built scene can be asked (the reasoning world's only: the default
    world's scene builder takes any typed question, as before)."""
    if world_name != "reasoning":
        return []
    from vlod_core.toy import reasoning

    return reasoning.scene_questions(tuple(objects))
