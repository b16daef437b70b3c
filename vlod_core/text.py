"""Checks on the text a user types: questions and answers to score."""

from __future__ import annotations

MAX_QUESTION_CHARS = 500


def check_question(question: str | None) -> tuple[str, list[str]]:
    """The question to use (stripped, maybe truncated) and notes; ValueError if there is none."""
    text = (question or "").strip()
    if not text:
        raise ValueError("the question is empty")
    notes = []
    if len(text) > MAX_QUESTION_CHARS:
        notes.append(f"question truncated from {len(text):,} to {MAX_QUESTION_CHARS} characters")
        text = text[:MAX_QUESTION_CHARS]
    return text, notes
