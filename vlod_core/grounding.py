"""Does a model's answer depend on *which* image it gets? The check that catches a blind teacher.

The failure users report most about VLM distillation is silent: the teacher (or the training forward) never
sees the image — a processor or chat template that drops it, a projector whose output is the same for every
image, a text-only checkpoint — and the loss curves look healthy while the student learns to ignore the
image too. This module measures it directly, on a handful of rows, before anything trains:

- each model answers every row greedily with the row's image (its own answers; or the rows' references);
- those answers are teacher-forced three times, in one batched forward each: with the row's image, with
  another row's image (the batch's images shifted by one), and with a blank grey image of the same size;
- `kl_other` and `kl_blank` are the mean per-token KL(p(·|row's image) ‖ p(·|other image)) in nats.

A model that reads the image moves its distributions when the image changes; one that cannot see it does not
move at all: a zeroed (or constant) projector, a processor that drops the image and a text-only model give
exactly 0 for both alternatives, since every image — the blank one too — becomes the same input. The headline
number is the larger of the two: a weakly trained model may tell an image from a blank one long before it
tells two scenes apart (the test suite's briefly trained toy student: 0.003 nats to another scene, 0.54 to the
blank), and that is not the failure this check is for. Below `THRESHOLD` the verdict is "ignores the image";
the threshold sits far below the working toy pair's values and far above the zeroed projector's (README,
"The blind teacher").

What it does not catch: a model whose image tokens reach it but that never learned to use them. The toy blind
student (trained on text alone) moves with the image — image tokens it never learned perturb it — so it passes;
it is named in a note instead, as expected.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image

from vlod_core.data import Row, StoredImage
from vlod_core.inputs import encode_prompts, with_responses
from vlod_core.losses import kl
from vlod_core.modes import eval_mode
from vlod_core.sampling import SamplingConfig, generate_encoded
from vlod_core.scoring import context_logprobs

logger = logging.getLogger(__name__)

DEFAULT_ROWS = 8
THRESHOLD = 0.01  # nats per token: a zeroed projector measures 0.0, the working toy pair 0.13 and up (README)
MAX_NEW_TOKENS = 16
BLANK_GREY = (128, 128, 128)
LIKELY_CAUSES = (
    "a processor or chat template that drops the image (no image tokens in the prompt, or pixel values that "
    "never reach the model)",
    "a broken projector (it gives the same output whatever the image: zeroed, untrained or wrongly loaded weights)",
    "a text-only checkpoint (a language model without a trained vision tower behind it)",
)
EXPECTED_BLIND = "student_blind"  # the toy student variant trained on text alone


@dataclass(frozen=True)
class Grounding:
    """How much one model's answers depend on which image it gets, and the verdict."""

    role: str  # "teacher" or "student"
    model: str  # the name a user recognises: a Hub id, a folder, "toy teacher"
    kl: float  # the headline: the larger of kl_other and kl_blank
    kl_other: float | None  # None: fewer than two distinct images among the rows
    kl_blank: float
    threshold: float
    rows: int
    tokens: int  # answer tokens the KLs average over
    answers: str  # "own greedy answers" or "reference answers"
    expected_blind: bool = False  # the toy blind student: its blindness is what it is for

    @property
    def grounded(self) -> bool:
        return self.kl >= self.threshold

    @property
    def verdict(self) -> str:
        return "reads the image" if self.grounded else "ignores the image"

    @property
    def causes(self) -> tuple[str, ...]:
        return () if self.grounded or self.expected_blind else LIKELY_CAUSES

    def _measured(self) -> str:
        return (
            f"its answers change by {self.kl:.2g} nats per token when it gets another image or a blank one "
            f"(threshold {self.threshold:g}; {self.rows} rows, {self.tokens} tokens of its {self.answers})"
        )

    def warning(self) -> str | None:
        """The paragraph for the user when the model ignores the image; None when it reads it (or is the toy
        blind student, whose blindness is its purpose: see `note`)."""
        if self.grounded or self.expected_blind:
            return None
        consequence = (
            "distilling from it teaches the student to ignore the image too, while the losses look healthy"
            if self.role == "teacher"
            else "distillation cannot teach a student to look at an image that never reaches it"
        )
        causes = "; ".join(f"({i + 1}) {c}" for i, c in enumerate(LIKELY_CAUSES))
        return (
            f"the {self.role} ({self.model}) ignores the image: {self._measured()}; {consequence}. "
            f"Likely causes: {causes}."
        )

    def note(self) -> str | None:
        """For the toy blind student only: it is named, and its blindness said to be expected."""
        if not self.expected_blind:
            return None
        if not self.grounded:
            return (
                f"the {self.role} ({self.model}) ignores the image: {self._measured()}. This is expected: the toy "
                "blind student was trained on text alone; distillation is what has to teach it to look."
            )
        return (
            f"the {self.role} ({self.model}) was trained on text alone: it is expected not to read the image "
            f"(its accuracy with the image is below the question alone's). Its answers still move with the image "
            f"({self.kl:.2g} nats per token, above the threshold {self.threshold:g}): image tokens it never learned "
            "to read perturb it. This check catches an image that never reaches a model, not one a model has not "
            "learned to use; distillation is what has to teach it to look."
        )

    def to_dict(self) -> dict:
        return asdict(self) | {
            "grounded": self.grounded,
            "verdict": self.verdict,
            "causes": list(self.causes),
            "warning": self.warning(),
            "note": self.note(),
        }


@dataclass(frozen=True)
class GroundingReport:
    """Both models of a pair checked on the same rows."""

    teacher: Grounding
    student: Grounding | None = None

    @property
    def teacher_grounded(self) -> bool:
        return self.teacher.grounded

    @property
    def checked(self) -> list[Grounding]:
        return [g for g in (self.teacher, self.student) if g is not None]

    @property
    def warnings(self) -> list[str]:
        """A model that ignores the image where it should not."""
        return [w for g in self.checked if (w := g.warning()) is not None]

    @property
    def notes(self) -> list[str]:
        """The toy blind student, named and said to be expected."""
        return [n for g in self.checked if (n := g.note()) is not None]

    def to_dict(self) -> dict:
        return {
            "teacher": self.teacher.to_dict(),
            "student": self.student.to_dict() if self.student is not None else None,
            "warnings": self.warnings,
            "notes": self.notes,
        }


class UngroundedTeacher(ValueError):
    """The teacher ignores the image and the caller asked for a grounded one; the message is the warning."""


def model_name(pair, role: str) -> str:
    """The name a user recognises for one model of the pair."""
    spec = pair.spec
    name = spec.teacher if role == "teacher" else spec.student
    if name != "toy":
        return name
    if role == "student" and spec.student_variant == EXPECTED_BLIND:
        return "toy blind student"
    return f"toy {role}"


def _image_key(row: Row):
    image = row.image
    if isinstance(image, StoredImage):
        return ("stored", str(image.source) if not isinstance(image.source, bytes) else hash(image.source))
    return ("pil", id(image))


def pick_rows(rows: Sequence[Row], n: int = DEFAULT_ROWS) -> list[Row]:
    """Up to `n` rows spread over the set, with distinct images where the set has them.

    A data set with many questions per image (multi-turn sets) would otherwise give rows whose "other" image
    is their own.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("the grounding check needs at least one row")
    step = max(1, len(rows) // (4 * n))  # look at a spread of the set, not only its first rows
    candidates = rows[::step] + [r for i, r in enumerate(rows) if i % step]
    chosen, seen = [], set()
    for row in candidates:
        key = _image_key(row)
        if key not in seen:
            seen.add(key)
            chosen.append(row)
        if len(chosen) == n:
            return chosen
    extra = [r for r in rows if r not in chosen]  # fewer distinct images than n: fill with the remaining rows
    return chosen + extra[: n - len(chosen)]


def _distinct(images: list[Image.Image]) -> bool:
    first = images[0].tobytes()
    return any(im.size != images[0].size or im.tobytes() != first for im in images[1:])


@torch.no_grad()
def measure(
    model,
    processor,
    tokenizer,
    vocab_size: int,
    rows: Sequence[Row],
    *,
    role: str,
    name: str,
    answers: str = "own",
    threshold: float = THRESHOLD,
    expected_blind: bool = False,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> Grounding:
    """The grounding of one model (with its own processor) on `rows`; see the module doc."""
    if answers not in ("own", "reference"):
        raise ValueError(f"answers must be 'own' or 'reference', got {answers!r}")
    rows = list(rows)
    images = [row.load_image() for row in rows]
    questions = [row.question for row in rows]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    with eval_mode(model):
        own = _on(encode_prompts(processor, questions, images), device)
        if answers == "reference" and all(row.answer is not None for row in rows):
            from vlod_core.evaluation import reference_ids

            responses = [reference_ids(tokenizer, row.answer) for row in rows]
        else:
            answers = "own"
            config = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
            responses = [r or [tokenizer.eos_token_id] for r in generate_encoded(model, tokenizer, own, config)]
        steps = max(map(len, responses))

        def logprobs(encoded: dict) -> torch.Tensor:
            return context_logprobs(model, with_responses(encoded, responses, pad), steps, vocab_size)

        base = logprobs(own)
        from vlod_core.inputs import response_tensors

        _, mask = response_tensors(responses, pad)
        mask = mask.to(device).float()

        def mean_kl(other_images: list[Image.Image]) -> float:
            other = logprobs(_on(encode_prompts(processor, questions, other_images), device))
            per_token = kl(base, other, mask)  # KL(p(·|own image) ‖ p(·|other image)) per position
            return float(per_token.sum() / mask.sum())

        kl_blank = mean_kl([Image.new("RGB", im.size, BLANK_GREY) for im in images])
        kl_other = mean_kl(images[1:] + images[:1]) if len(images) > 1 and _distinct(images) else None
    headline = max(kl_blank, kl_other if kl_other is not None else 0.0)
    return Grounding(
        role,
        name,
        _clean(headline),
        None if kl_other is None else _clean(kl_other),
        _clean(kl_blank),
        threshold,
        len(rows),
        int(mask.sum()),
        "own greedy answers" if answers == "own" else "reference answers",
        expected_blind,
    )


def _clean(value: float) -> float:
    """Float rounding can make a KL of identical distributions a hair below zero."""
    return max(value, 0.0) if math.isfinite(value) else value


def _on(encoded: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in encoded.items()}


def check_pair(
    pair,
    rows: Sequence[Row],
    *,
    student=None,
    n: int = DEFAULT_ROWS,
    answers: str = "own",
    threshold: float = THRESHOLD,
    students: bool = True,
    log: bool = True,
) -> GroundingReport:
    """The teacher's (and the student's, unless `students=False`) grounding on up to `n` of `rows`.

    `rows` are any rows the models can be asked about (the entry points hand drawn toy scenes where the user gave
    none); `student` defaults to the pair's. Warnings are logged (the CLI prints them itself; the app shows them in
    a box).
    """
    chosen = pick_rows(rows, n)
    common = dict(rows=chosen, answers=answers, threshold=threshold)
    teacher = measure(
        pair.teacher,
        pair.teacher_inputs_processor,
        pair.tokenizer,
        pair.vocab_size,
        role="teacher",
        name=model_name(pair, "teacher"),
        **common,
    )
    checked_student = None
    if students:
        checked_student = measure(
            student if student is not None else pair.student,
            pair.processor,
            pair.tokenizer,
            pair.vocab_size,
            role="student",
            name=model_name(pair, "student"),
            expected_blind=pair.spec.student_variant == EXPECTED_BLIND,
            **common,
        )
    report = GroundingReport(teacher, checked_student)
    if log:
        for text in report.warnings:
            logger.warning("%s", text)
        for text in report.notes:
            logger.info("%s", text)
    return report


def require_grounded_teacher(report: GroundingReport) -> None:
    """Refuse (raise `UngroundedTeacher`) when the teacher ignores the image."""
    if not report.teacher_grounded:
        raise UngroundedTeacher(f"refused: a teacher that reads the image is required, and {report.teacher.warning()}")
