"""The reasoning world: questions on the toy scenes that need a short chain over several visual facts.

The scenes are `world`'s (the same grammar, the same drawings); the questions are not answered by one fact
but by a chain: read two facts off the image, then combine them in language (subtract, add, hop, compare).
Four kinds:

- `not_colour`      "how many shapes are not red ?"            count the shapes, is a red one there, subtract
- `two_shapes`      "how many circles and squares together ?"  is there a circle, is there a square, add
- `leftmost_colour` "what color is the leftmost shape ?"      which shape is leftmost, then its colour (a hop)
- `left_of`         "is the red shape left of the blue shape ?" the column of each, compare

An answer is a chain `<reason> … </reason> \\boxed{ANSWER}`, read by `answers.final_answer(text, "boxed")`.
A chain is made of slots (an opener, one per fact, the step that combines them); each slot has phrasings in
two *styles*, the teacher's (terse, "step by step", facts in one order) and the student's (chatty, facts in
the other order, other connectives). A style is a distribution over the phrasings, not one template, as a
real model's is: the student writes its first phrasing 70 % of the time and its second 30 %; the teacher
writes its own 70 % of the time and the student's two in the remaining `READ_SHARE` = 30 %, so it has
*read* the student's style (it can continue a student prefix sensibly, which is what lets it score the
student's chains) while writing its own. How the teacher splits that share between the student's two
phrasings is the world's *style gap* `gap`: 0 splits it as the student does (0.7, 0.3), 1 reverses it
(0.3, 0.7), up to 1.75 (0, 1). It is the knob for ‖gLang‖ at step 0 (METHOD.md, "The paper's regime"): the
gradient of KL(p‖q) with respect to the student's logits is p·(log p/q − KL), zero wherever q is
proportional to p on p's support, so a teacher that merely adds its own phrasing to the student's (gap 0)
gives almost no language gradient however large the KL, and the gradient grows with the log-ratio between
the two preferences. The fact order is a slot too: the teacher keeps its own order 70 % of the time, the
student its own 80 %.

The fact words (a count, yes or no, a shape, a colour, a column) are the image-read tokens; every other
token is language, and most of a chain is language.
"""

from __future__ import annotations

from types import MappingProxyType

import re
from dataclasses import dataclass

import numpy as np

from vlod_core.toy import world

KINDS = ("not_colour", "two_shapes", "leftmost_colour", "left_of")
STYLES = ("teacher", "student")
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
PLURALS = MappingProxyType({"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"})
YES_NO = ("yes", "no")
REASON_OPEN, REASON_CLOSE, BOXED_OPEN, BOXED_CLOSE = "<reason>", "</reason>", "\\boxed{", "}"
MARKERS = (REASON_OPEN, REASON_CLOSE, BOXED_OPEN, BOXED_CLOSE)  # whole tokens of the reasoning tokenizer

STYLE_GAP = 0.25  # how the teacher splits its reading share between the student's phrasings (module doc)
MAX_GAP = 1.75
READ_SHARE = 0.3  # the teacher's share of the student's phrasings in each slot, and of the student's order
STUDENT_PREFERENCE = (0.7, 0.3)  # the student's two phrasings of a slot
STUDENT_ORDER = 0.8  # the student's share of its own fact order
MAX_NEW_TOKENS = 64  # room for the longest chain and its end-of-turn token (chains run 20 to 60 tokens)

# Slot phrasings: (the teacher's, (the student's first, the student's second)). `{v_…}` are fact words read
# off the image (visual tokens), the other fields copy words already in the question or the chain.
OPENER = ("let me think step by step :", ("okay , let me look at the picture .", "alright , i will look closely ."))
SLOTS = MappingProxyType(
    {
        "count": (
            "count : {v_n} shapes .",
            ("i can see {v_n} shapes in all .", "there are {v_n} shapes in the picture ."),
        ),
        "has_colour": ("{c} : {v_yes} .", ("is any shape {c} ? {v_yes} .", "do i see a {c} shape ? {v_yes} .")),
        "minus": (
            "{n} minus {k} is {a} .",
            ("so {n} take away {k} leaves {a} .", "that means {n} less {k} gives {a} ."),
        ),
        "has_a": ("{pa} : {v_ka} .", ("how many {pa} ? i count {v_ka} .", "i find {v_ka} of the {pa} here .")),
        "has_b": ("{pb} : {v_kb} .", ("how many {pb} ? i count {v_kb} .", "i find {v_kb} of the {pb} here .")),
        "plus": ("{ka} plus {kb} is {a} .", ("so {ka} and {kb} make {a} .", "adding them , {ka} and {kb} give {a} .")),
        "leftmost": (
            "leftmost : {v_s} .",
            ("the shape furthest left is the {v_s} .", "on the left side i see the {v_s} ."),
        ),
        "its_colour": ("{s} : {v_c} .", ("the {s} looks {v_c} .", "its color is {v_c} .")),
        "answer": ("answer : {a} .", ("so the color is {a} .", "that makes it {a} .")),
        "column_1": (
            "{c1} : column {v_k1} .",
            ("the {c1} shape sits in column {v_k1} .", "i find the {c1} one in column {v_k1} ."),
        ),
        "column_2": (
            "{c2} : column {v_k2} .",
            ("the {c2} shape sits in column {v_k2} .", "i find the {c2} one in column {v_k2} ."),
        ),
        "compare": (
            "{k1} {rel} {k2} , {a} .",
            ("column {k1} is {rel} column {k2} , so {a} .", "since {k1} is {rel} {k2} , it is {a} ."),
        ),
    }
)
# Fact slots in the teacher's order; the student reads them the other way round. A hop has one order.
FACTS = MappingProxyType(
    {
        "not_colour": ("count", "has_colour"),
        "two_shapes": ("has_a", "has_b"),
        "leftmost_colour": ("leftmost", "its_colour"),
        "left_of": ("column_1", "column_2"),
    }
)
STEP = MappingProxyType(
    {"not_colour": "minus", "two_shapes": "plus", "leftmost_colour": "answer", "left_of": "compare"}
)
REORDERABLE = frozenset({"not_colour", "two_shapes", "left_of"})
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Question:
    """One reasoning question about a scene, with the values its chain fills in."""

    kind: str
    text: str
    answer: str  # the final answer (what `\\boxed{}` holds)
    fields: dict  # slot field -> word


@dataclass(frozen=True)
class Chain:
    """A chain's words, which of them are read off the image, and its final answer."""

    words: tuple[str, ...]
    visual: tuple[bool, ...]
    answer: str

    @property
    def text(self) -> str:
        return " ".join(self.words)


def question(objects: tuple[world.SceneObject, ...], kind: str, rng: np.random.Generator) -> Question:
    """A question of `kind` about `objects` (`left_of` needs two objects), its names drawn with `rng`."""
    if kind == "not_colour":
        return posed(objects, kind, (_present_or_absent([o.colour for o in objects], world.COLOURS, rng),))
    if kind == "two_shapes":
        shapes = [o.shape for o in objects]
        a = _present_or_absent(shapes, world.SHAPES, rng)
        return posed(objects, kind, (a, _present_or_absent(shapes, [s for s in world.SHAPES if s != a], rng)))
    if kind == "leftmost_colour":
        return posed(objects, kind, ())
    if kind == "left_of":
        if len(objects) < 2:
            raise ValueError("a left_of question needs two objects")
        return posed(objects, kind, tuple(objects[int(i)] for i in rng.choice(len(objects), size=2, replace=False)))
    raise ValueError(f"unknown question kind {kind!r}; expected one of {KINDS}")


def posed(objects: tuple[world.SceneObject, ...], kind: str, names: tuple) -> Question:
    """The question of `kind` about `objects` that names `names` (a colour for `not_colour`, two shapes for
    `two_shapes`, none for `leftmost_colour`, two of the objects for `left_of`), with its chain's values."""
    if kind == "not_colour":
        (colour,) = names
        n, k = len(objects), int(colour in [o.colour for o in objects])
        fields = {
            "c": colour,
            "v_n": NUMBER_WORDS[n],
            "n": NUMBER_WORDS[n],
            "v_yes": YES_NO[1 - k],
            "k": NUMBER_WORDS[k],
        }
        return Question(kind, f"how many shapes are not {colour} ?", NUMBER_WORDS[n - k], fields)
    if kind == "two_shapes":
        a, b = names
        shapes = [o.shape for o in objects]
        ka, kb = int(a in shapes), int(b in shapes)
        fields = {"pa": PLURALS[a], "pb": PLURALS[b], "v_ka": NUMBER_WORDS[ka], "v_kb": NUMBER_WORDS[kb]}
        fields |= {"ka": NUMBER_WORDS[ka], "kb": NUMBER_WORDS[kb]}
        return Question(kind, f"how many {PLURALS[a]} and {PLURALS[b]} together ?", NUMBER_WORDS[ka + kb], fields)
    if kind == "leftmost_colour":
        left = min(objects, key=lambda o: o.col)
        fields = {"v_s": left.shape, "s": left.shape, "v_c": left.colour}
        return Question(kind, "what color is the leftmost shape ?", left.colour, fields)
    if kind == "left_of":
        first, second = names
        k1, k2 = NUMBER_WORDS[first.col + 1], NUMBER_WORDS[second.col + 1]
        yes = first.col < second.col
        fields = {"c1": first.colour, "c2": second.colour, "v_k1": k1, "v_k2": k2, "k1": k1, "k2": k2}
        fields["rel"] = "before" if yes else "not before"
        text = f"is the {first.colour} shape left of the {second.colour} shape ?"
        return Question(kind, text, "yes" if yes else "no", fields)
    raise ValueError(f"unknown question kind {kind!r}; expected one of {KINDS}")


_TEMPLATES = (
    ("not_colour", re.compile(r"how many shapes are not (\w+) \?")),
    ("two_shapes", re.compile(r"how many (\w+) and (\w+) together \?")),
    ("leftmost_colour", re.compile(r"what color is the leftmost shape \?")),
    ("left_of", re.compile(r"is the (\w+) shape left of the (\w+) shape \?")),
)


def question_from_text(objects: tuple[world.SceneObject, ...], text: str) -> Question | None:
    """The question `text` asks about a composed scene when it is one of the four kinds and has one right answer
    there (its chain's values filled in), else None: a scene a person builds may leave the world's grammar (an
    empty scene, five objects, two shapes of one colour, a shared leftmost column)."""
    words = " ".join(text.strip().lower().replace("?", " ?").split())
    if not objects or len(objects) >= len(NUMBER_WORDS):
        return None
    for kind, template in _TEMPLATES:
        match = template.fullmatch(words)
        if match is None:
            continue
        colours, shapes = [o.colour for o in objects], [o.shape for o in objects]
        singular = {plural: shape for shape, plural in PLURALS.items()}
        if kind == "not_colour" and match[1] in world.COLOURS and colours.count(match[1]) <= 1:
            return posed(objects, kind, (match[1],))
        if kind == "two_shapes" and {match[1], match[2]} <= set(singular) and match[1] != match[2]:
            a, b = singular[match[1]], singular[match[2]]
            return posed(objects, kind, (a, b)) if shapes.count(a) <= 1 and shapes.count(b) <= 1 else None
        if kind == "leftmost_colour":
            columns = sorted(o.col for o in objects)
            return posed(objects, kind, ()) if len(columns) == 1 or columns[0] != columns[1] else None
        if kind == "left_of" and match[1] != match[2] and colours.count(match[1]) == colours.count(match[2]) == 1:
            named = tuple(next(o for o in objects if o.colour == c) for c in (match[1], match[2]))
            return posed(objects, kind, named)
        return None
    return None


def scene_questions(objects: tuple[world.SceneObject, ...]) -> list[str]:
    """One question of each kind a composed scene can be asked (its first colour and two shapes, the first two
    objects for `left_of`), for a page to offer."""
    found = []
    if objects:
        found.append(f"how many shapes are not {objects[0].colour} ?")
    there = list(dict.fromkeys(o.shape for o in objects))
    shapes = there + [s for s in world.SHAPES if s not in there]
    found.append(f"how many {PLURALS[shapes[0]]} and {PLURALS[shapes[1]]} together ?")
    if objects:
        found.append("what color is the leftmost shape ?")
    if len(objects) >= 2:
        found.append(f"is the {objects[0].colour} shape left of the {objects[1].colour} shape ?")
    return [q for q in found if question_from_text(objects, q) is not None]


def teacher_split(gap: float) -> tuple[float, float]:
    """How the teacher splits its reading share between the student's two phrasings at style gap `gap`."""
    if not 0.0 <= gap <= MAX_GAP:
        raise ValueError(f"the style gap must be in [0, {MAX_GAP}], got {gap}")
    first = STUDENT_PREFERENCE[0] - 0.4 * gap
    return first, 1.0 - first


def _present_or_absent(present: list[str], names, rng: np.random.Generator) -> str:
    """A name from `names`, there in the scene or not with even odds where both are possible (so absence, the
    harder fact to read, is asked as often as presence)."""
    there = [n for n in names if n in present]
    missing = [n for n in names if n not in present]
    pool = there if (rng.random() < 0.5 and there) or not missing else missing
    return pool[int(rng.integers(len(pool)))]


def _phrasing(slot: str, style: str, rng: np.random.Generator | None, gap: float) -> str:
    own, theirs = OPENER if slot == "opener" else SLOTS[slot]
    if rng is None:  # the style's most likely phrasing: what greedy decoding of a trained model writes
        return own if style == "teacher" else theirs[0]
    if style == "student":
        return theirs[int(rng.random() >= STUDENT_PREFERENCE[0])]
    if rng.random() >= READ_SHARE:
        return own
    return theirs[int(rng.random() >= teacher_split(gap)[0])]


def chain(q: Question, style: str, rng: np.random.Generator | None = None, gap: float = STYLE_GAP) -> Chain:
    """The chain answering `q` in `style`; `rng` draws the phrasings from the style's distribution (None: its
    most likely chain, the reference)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    facts = FACTS[q.kind]
    if q.kind in REORDERABLE:
        own_order = 1 - READ_SHARE if style == "teacher" else STUDENT_ORDER
        teacher_order = (rng is None or rng.random() < own_order) == (style == "teacher")
        facts = facts if teacher_order else facts[::-1]
    words, visual = [REASON_OPEN], [False]
    fields = q.fields | {"a": q.answer}
    for slot in ("opener", *facts, STEP[q.kind]):
        for word in _phrasing(slot, style, rng, gap).split():
            match = _FIELD.fullmatch(word)
            filled = fields[match[1]] if match else word
            for part in filled.split():
                words.append(part)
                visual.append(bool(match) and match[1].startswith("v_"))
    words += [REASON_CLOSE, BOXED_OPEN, q.answer, BOXED_CLOSE]
    visual += [False] * 4
    return Chain(tuple(words), tuple(visual), q.answer)


def sample_scene(rng: np.random.Generator, kind: str) -> tuple[world.SceneObject, ...]:
    """A scene of `world`'s grammar that can pose `kind` (two objects at least for `left_of`)."""
    while True:
        objects = world._sample_objects(rng)
        if kind != "left_of" or len(objects) >= 2:
            return objects


def sample_examples(
    n: int,
    seed: int,
    type_weights: tuple[float, ...] | None = None,
    style: str = "teacher",
    gap: float = STYLE_GAP,
    reference: bool = False,
) -> list[world.Example]:
    """`n` examples drawn from `seed`, answers being chains in `style` (drawn from its distribution, or its
    most likely chain when `reference`); kinds in equal shares unless weighted. The same call signature as
    `world.sample_examples`, so the toy trainer takes either."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        if type_weights is None:
            kind = KINDS[i % len(KINDS)]
        else:
            kind = KINDS[int(rng.choice(len(KINDS), p=np.asarray(type_weights) / sum(type_weights)))]
        objects = sample_scene(rng, kind)
        q = question(objects, kind, rng)
        answer = chain(q, style, None if reference else rng, gap).text
        examples.append(world.Example(objects, q.text, answer, kind))
    return examples


def vocabulary() -> list[str]:
    """Every word a question or a chain of either style can use (the reasoning tokenizer's extra words)."""
    fills = [*NUMBER_WORDS, *world.SHAPES, *PLURALS.values(), *world.COLOURS, *YES_NO, "before", "not"]
    words = set(fills)
    for own, theirs in [OPENER, *SLOTS.values()]:
        for phrasing in (own, *theirs):
            words |= {w for w in phrasing.split() if not _FIELD.fullmatch(w)}
    for q in ("how many shapes are not ?", "how many and together ?", "what color is the leftmost shape ?"):
        words |= set(q.split())
    words |= set("is the shape left of the shape ?".split())
    return sorted(words)


def prior_accuracy(examples: list[world.Example], reference: list[world.Example]) -> float:
    """Final-answer accuracy of the best question-only guesser fitted on `reference`."""
    from vlod_core.answers import final_answer

    counts: dict[str, dict[str, int]] = {}
    for ex in reference:
        answer = final_answer(ex.answer, "boxed")
        counts.setdefault(ex.question, {}).setdefault(answer, 0)
        counts[ex.question][answer] += 1
    best = {q: max(answers, key=answers.get) for q, answers in counts.items()}
    return float(np.mean([best.get(ex.question) == final_answer(ex.answer, "boxed") for ex in examples]))


def build_reasoning_tokenizer():
    """The toy tokenizer with the chains' words, and the chain markers as whole tokens (`\\boxed{` is one
    token, so a decoded chain reads `\\boxed{ two }`, which `answers.final_answer` parses)."""
    from tokenizers import AddedToken

    from vlod_core.toy.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(extra_words=tuple(vocabulary()))
    tokenizer.add_tokens([AddedToken(m, normalized=False, special=False) for m in MARKERS])
    return tokenizer


def build_reasoning_processor():
    from vlod_core.toy.models import build_processor

    return build_processor(build_reasoning_tokenizer())
