"""Final answers: what part of a response is compared with the reference.

A short answer ("it is red") is its own final answer. A reasoning chain is not: only what it concludes is
compared, as the paper scores `<reason> … </reason>` chains by the content of their `\\boxed{…}`. A pattern
names the conclusion: `boxed` (the shorthand for `\\boxed{…}`) or any regular expression, whose first group
(else the whole match) is the answer; the *last* match counts, since a chain may box intermediate values.
A response the pattern does not find has no final answer: it counts as wrong and, apart, as a format error.
"""

from __future__ import annotations

from types import MappingProxyType

import re

BOXED = r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}"  # one level of inner braces: \boxed{\frac{1}{2}}
SHORTHANDS = MappingProxyType({"boxed": BOXED})


def compile_pattern(pattern: str | None) -> re.Pattern | None:
    """`None` (the whole response is the answer), a shorthand (`boxed`), or a regular expression."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(SHORTHANDS.get(pattern, pattern), re.DOTALL)
    except re.error as error:
        raise ValueError(f"--answer-pattern is not a valid regular expression ({error}): {pattern!r}") from None


def normalise(answer: str) -> str:
    """Case, surrounding spaces, runs of whitespace and a closing full stop do not make an answer different."""
    return " ".join(answer.lower().split()).rstrip(" .")


def final_answer(text: str, pattern: str | re.Pattern | None = None) -> str | None:
    """The normalised final answer of `text`, or None where `pattern` finds none (a format error)."""
    compiled = compile_pattern(pattern) if not isinstance(pattern, re.Pattern) else pattern
    if compiled is None:
        return normalise(text)
    matches = list(compiled.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    return normalise(last.group(1) if compiled.groups else last.group(0))


def is_correct(response: str, reference: str, pattern: str | re.Pattern | None = None) -> bool:
    """Exact match of the parsed final answers. The reference is parsed with the same pattern when it holds a
    match (a reference chain), else taken whole (a bare reference answer)."""
    got = final_answer(response, pattern)
    if got is None:
        return False
    wanted = final_answer(reference, pattern)
    return got == (wanted if wanted is not None else normalise(reference))
