"""Evaluation on any data set: does the student answer as the teacher does, with the image and without it?

Real data rarely has exact reference answers, and distillation aims at the teacher anyway, so every row is
measured against the teacher's own greedy answer, in each context (image kept; image ablated):

- `agreement`: would the student's greedy answer equal the teacher's? Greedy decoding reproduces a sequence
  iff at every position the argmax equals its token given the prefix, so one teacher-forced pass on the
  teacher's answer decides it, with no generation loop (a test checks the shortcut against `generate()`);
- `token_agreement`: the share of the teacher's answer tokens the student's argmax matches;
- `kl`: mean per-token KL(student ‖ teacher) on the teacher's answer (what distillation lowers);
- `accuracy`: the same shortcut on the reference answer, where rows have one.

Reasoning answers are scored by their *final answer* (`vlod_core.answers`), which needs the generated text:
with an answer pattern (`EvalSet(answer_pattern="boxed")` or a regex) the student answers greedily and

- `acc1`: exact match of the parsed final answer of the greedy answer with the reference's (Acc@1);
  `accuracy` then holds the same numbers, so every view that leads with accuracy scores final answers;
- `format_errors`: the share of greedy answers in which the pattern finds no final answer (they also
  count as wrong in `acc1`).

`EvalSet(samples=k)` adds `acc_k`: the mean final-answer accuracy of k answers sampled at temperature 1
(Acc@k; per row the share of its k samples that are right, then the mean over rows; its standard error is
over rows). The draws come from private generators seeded by the set's `seed`, so an evaluation is
reproducible and two evaluations of one set (before and after training) use the same seeds. Without a
pattern and with `samples=0` (the default) nothing is generated: the cost and the figures are as before.

Names carry the context: `agreement_image`, `agreement_no_image`, ... Each has a standard error (binomial for
the rates, sample standard deviation over √n for the means). The teacher's greedy answers (and, when they
are small, its log-probs on them and the encoded prompts) are computed once per evaluation set and reused
by every later evaluation of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vlod_core.answers import compile_pattern, final_answer, is_correct
from vlod_core.data import Row, binomial_stderr
from vlod_core.engine import encode, sample
from vlod_core.images import thumbnail_uri
from vlod_core.inputs import PromptBatch, encode_rows, response_tensors, with_responses
from vlod_core.losses import kl
from vlod_core.modes import eval_mode
from vlod_core.sampling import GREEDY, SamplingConfig, decode
from vlod_core.scoring import context_logprobs, merge_contexts

SUFFIX = {"image": "image", "ablated": "no_image"}  # context -> the suffix of its metric names
RATES = ("agreement", "accuracy", "acc1", "format")  # per-row booleans: binomial standard errors
CATEGORISED = ("accuracy_", "acc1_", "acc_k_")  # metrics also reported per row category
MAX_SAMPLES = 64  # Acc@k: at most this many samples per row
CACHE_BYTES = 256 * 2**20  # cache encoded prompts and teacher log-probs of an evaluation set below this size

Progress = Callable[[int, int], None]  # (rows done, rows in all)


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


def reference_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of a reference answer (whitespace normalised), ending with the end-of-turn token."""
    ids = tokenizer(normalise_whitespace(answer), add_special_tokens=False, padding=True, padding_side="right")
    return ids["input_ids"] + [tokenizer.eos_token_id]


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one evaluation set; `values` holds the fixed names (see the module doc)."""

    values: dict[str, float]
    stderr: dict[str, float]
    rows: int
    seen_in_training: bool = False
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> category -> value
    grounding: dict = field(default_factory=dict)  # GroundingReport.to_dict() when checked; else empty

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def get(self, name: str, default: float | None = None) -> float | None:
        return self.values.get(name, default)

    settings: dict = field(default_factory=dict)  # how answers were scored, where not the default

    def to_dict(self) -> dict:
        return {
            **self.values,
            "stderr": dict(self.stderr),
            "per_category": {k: dict(v) for k, v in self.per_category.items()},
            "eval_rows": self.rows,
            "eval_seen_in_training": self.seen_in_training,
            **self.settings,
        } | ({"grounding": self.grounding} if self.grounding else {})


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


@dataclass
class TeacherReference:
    """The teacher's greedy answers to every row, per context; its log-probs on them when cached."""

    answers: dict[str, list[list[int]]]
    logprobs: list[dict[str, torch.Tensor]] | None  # per chunk: context -> (B, T, V); None when too large


class EvalSet:
    """Evaluation rows, and what stays the same however often they are evaluated (per pair).

    `ablation` is how the image is taken away for the `_no_image` metrics; `max_new_tokens` bounds the
    teacher's greedy answers (and so the agreement decision, exactly as generation would be bounded) and the
    student's generated answers. `answer_pattern` (`boxed` or a regex) scores final answers; `samples` > 0
    adds Acc@k over that many samples per row, drawn from generators seeded by `seed` (module doc).
    """

    def __init__(
        self,
        rows: list[Row],
        seen_in_training: bool = False,
        ablation: str = "remove",
        max_new_tokens: int = 32,
        batch_size: int = 64,
        answer_pattern: str | None = None,
        samples: int = 0,
        seed: int = 0,
    ):
        if not rows:
            raise ValueError("an evaluation set needs at least one row")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= MAX_SAMPLES:
            raise ValueError(f"samples (Acc@k's k) must be a whole number in [0, {MAX_SAMPLES}], got {samples!r}")
        self.rows, self.seen_in_training = list(rows), seen_in_training
        self.ablation, self.max_new_tokens, self.batch_size = ablation, max_new_tokens, batch_size
        self.answer_pattern = answer_pattern or None
        self.pattern = compile_pattern(self.answer_pattern)  # ValueError (one line) for a bad regex
        self.samples, self.seed = samples, seed
        self._prompts: dict[tuple, dict[int, PromptBatch]] = {}
        self._references: dict[int, TeacherReference] = {}
        # Metrics of a model before its run changed it, per (the shared model, how its run copies it): see
        # `distill.RunEvaluator.metrics_before`. The model is kept beside its metrics, so a key is never reused.
        self.initial: dict[tuple, tuple[object, "Evaluation"]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_answers(self) -> bool:
        return any(row.answer is not None for row in self.rows)

    @property
    def generates(self) -> bool:
        """Whether evaluating needs the student's generated answers (final answers, or Acc@k)."""
        return self.pattern is not None or self.samples > 0

    def settings(self) -> dict:
        """How this set scores answers, for the evaluation record (empty for the default: whole answers)."""
        out = {}
        if self.answer_pattern is not None:
            out["eval_answer_pattern"] = self.answer_pattern
        if self.samples:
            out |= {"eval_samples": self.samples, "eval_sample_temperature": SAMPLE_TEMPERATURE}
        return out

    def chunks(self) -> list[slice]:
        return [slice(i, min(i + self.batch_size, len(self.rows))) for i in range(0, len(self.rows), self.batch_size)]

    def _fits(self, first_chunk_bytes: int) -> bool:
        return first_chunk_bytes * len(self.chunks()) <= CACHE_BYTES

    def prompts(self, pair, part: slice) -> PromptBatch:
        """The encoded prompts of one chunk (both contexts), cached while the whole set stays small."""
        key, index = (id(pair.processor), id(pair.teacher_processor)), part.start // self.batch_size
        cache = self._prompts.get(key)
        if cache is not None and index in cache:
            return cache[index]
        rows = self.rows[part]
        prompts = encode(pair, [r.load_image() for r in rows], [r.question for r in rows], self.ablation)
        if cache is None and index == 0:
            if self._fits(_nbytes(t for enc in prompts.encoded.values() for t in enc.values())):
                cache = self._prompts[key] = {}
        if cache is not None:
            cache[index] = prompts
        return prompts

    def teacher_reference(self, pair, progress: Progress | None = None) -> TeacherReference:
        """The teacher's greedy answers (once per pair's teacher), with its log-probs on them if small."""
        cached = self._references.get(id(pair.teacher))
        if cached is not None:
            return cached
        config = SamplingConfig(greedy=True, max_new_tokens=self.max_new_tokens)
        answers: dict[str, list[list[int]]] = {"image": [], "ablated": []}
        logprobs: list[dict[str, torch.Tensor]] | None = []
        for part in self.chunks():
            prompts = self.prompts(pair, part)
            chunk = {c: sample(pair.teacher, pair, prompts, config, role="teacher", context=c) for c in SUFFIX}
            for context in SUFFIX:
                answers[context] += chunk[context]
            if logprobs is not None:
                logprobs.append(_teacher_logprobs(pair, prompts, chunk))
                if len(logprobs) == 1 and not self._fits(_nbytes(logprobs[0].values())):
                    logprobs = None  # too large to keep: each evaluation recomputes them instead
            if progress is not None:
                progress(part.stop, len(self.rows))
        reference = TeacherReference(answers, logprobs)
        self._references[id(pair.teacher)] = reference
        return reference

    def teacher_answers(self, pair) -> list[dict]:
        """The teacher's greedy answers as text, per row."""
        reference = self.teacher_reference(pair)
        return [
            {"image": decode(pair.tokenizer, a), "no_image": decode(pair.tokenizer, b)}
            for a, b in zip(reference.answers["image"], reference.answers["ablated"])
        ]


def _teacher_logprobs(pair, prompts: PromptBatch, answers: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
    """The teacher's (B, T, V) log-probs on its own answers, per context."""
    pad = pair.tokenizer.pad_token_id
    out = {}
    with torch.no_grad():
        for context, responses in answers.items():
            inputs = with_responses(prompts.encoded[("teacher", context)], responses, pad)
            steps = max(map(len, responses))
            out[context] = context_logprobs(pair.teacher, inputs, steps, pair.vocab_size)
    return out


def _padded(responses: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = response_tensors(responses, pad)
    return ids.to(device), mask.to(device)


def _student_logprobs(model, pair, prompts: PromptBatch, responses: dict[tuple[str, str], list[list[int]]]):
    """The student's log-probs on several response sets of the same prompts: one batched pass per context."""
    pad = pair.tokenizer.pad_token_id
    out = {}
    for context in SUFFIX:
        keys = [key for key in responses if key[0] == context]
        parts = [with_responses(prompts.encoded[("student", context)], responses[key], pad) for key in keys]
        merged = parts[0]
        for part in parts[1:]:
            merged = merge_contexts(merged, part, pad)
        steps = max(len(r) for key in keys for r in responses[key])
        logprobs = context_logprobs(model, merged, steps, pair.vocab_size)  # (K*B, T, V)
        rows = len(prompts)
        out |= {key: logprobs[i * rows : (i + 1) * rows] for i, key in enumerate(keys)}
    return out


SAMPLE_TEMPERATURE = 1.0  # Acc@k's samples, as the paper draws them

# (context, sampling config, generator seed or None) -> the chunk's answers as text, one per row
Generate = Callable[[str, SamplingConfig, int | None], list[str]]


def sample_seed(seed: int, chunk: int, draw: int) -> int:
    """The generator seed of one Acc@k draw of one chunk; both contexts share it (paired draws)."""
    return (seed * 1_000_003 + chunk * 7919 + draw * 104_729) % (2**31)


def generated_metrics(
    generate: Generate,
    references: list[str | None],
    pattern,
    samples: int,
    max_new_tokens: int,
    seed: int = 0,
    chunk: int = 0,
) -> dict[str, list[float]]:
    """`acc1`, `format_errors` (with a pattern) and `acc_k` (with samples) per row, per context, from the
    answers `generate` gives (the student's, or a test's). Rows without a reference: NaN accuracies."""
    pattern = compile_pattern(pattern) if isinstance(pattern, str) else pattern
    greedy = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
    sampled = SamplingConfig(temperature=SAMPLE_TEMPERATURE, max_new_tokens=max_new_tokens)

    def right(texts: list[str]) -> list[float]:
        return [math.nan if ref is None else float(is_correct(t, ref, pattern)) for t, ref in zip(texts, references)]

    out: dict[str, list[float]] = {}
    for context, suffix in SUFFIX.items():
        texts = generate(context, greedy, None)
        out[f"acc1_{suffix}"] = right(texts)
        if pattern is not None:
            out[f"format_errors_{suffix}"] = [float(final_answer(t, pattern) is None) for t in texts]
        if samples:
            draws = [right(generate(context, sampled, sample_seed(seed, chunk, j))) for j in range(samples)]
            out[f"acc_k_{suffix}"] = [sum(row) / samples for row in zip(*draws)]  # NaN stays NaN
    return out


def _generator(model, pair, prompts: PromptBatch) -> Generate:
    def generate(context: str, config: SamplingConfig, seed: int | None) -> list[str]:
        return [decode(pair.tokenizer, ids) for ids in sample(model, pair, prompts, config, seed, context=context)]

    return generate


@torch.no_grad()
def per_row_metrics(model, pair, eval_set: EvalSet, progress: Progress | None = None) -> dict[str, list[float]]:
    """Every metric per row (NaN where a row has no reference answer)."""
    reference = eval_set.teacher_reference(pair)
    tokenizer = pair.tokenizer
    out: dict[str, list[float]] = {}
    with eval_mode(model):
        for index, part in enumerate(eval_set.chunks()):
            rows = eval_set.rows[part]
            prompts = eval_set.prompts(pair, part)
            device = prompts.encoded[("student", "image")]["input_ids"].device
            teacher_answers = {c: reference.answers[c][part] for c in SUFFIX}
            wanted = {(c, "teacher"): teacher_answers[c] for c in SUFFIX}
            has_reference = [row.answer is not None for row in rows]
            forced = any(has_reference) and eval_set.pattern is None  # else accuracy is on final answers
            if forced:
                refs = [
                    reference_ids(tokenizer, row.answer) if row.answer is not None else teacher_answers["image"][i]
                    for i, row in enumerate(rows)
                ]
                wanted |= {(c, "reference"): refs for c in SUFFIX}
            student = _student_logprobs(model, pair, prompts, wanted)
            teacher = (
                reference.logprobs[index]
                if reference.logprobs is not None
                else _teacher_logprobs(pair, prompts, teacher_answers)
            )
            for context, suffix in SUFFIX.items():
                ids, mask = _padded(teacher_answers[context], tokenizer.pad_token_id, device)
                logp = student[(context, "teacher")][:, : ids.shape[1]]
                hits = (logp.argmax(-1) == ids) & mask  # (B, T)
                tokens = mask.sum(-1).clamp(min=1)
                out.setdefault(f"agreement_{suffix}", []).extend((hits | ~mask).all(-1).float().tolist())
                out.setdefault(f"token_agreement_{suffix}", []).extend((hits.sum(-1) / tokens).tolist())
                per_token = kl(logp, teacher[context][:, : ids.shape[1]], mask.float())
                out.setdefault(f"kl_{suffix}", []).extend((per_token.sum(-1) / tokens).tolist())
                if forced:
                    ids, mask = _padded(wanted[(context, "reference")], tokenizer.pad_token_id, device)
                    logp = student[(context, "reference")][:, : ids.shape[1]]
                    right = ((logp.argmax(-1) == ids) | ~mask).all(-1).float()
                    values = [float(r) if has else math.nan for r, has in zip(right.tolist(), has_reference)]
                    out.setdefault(f"accuracy_{suffix}", []).extend(values)
            if eval_set.generates:
                generated = generated_metrics(
                    _generator(model, pair, prompts),
                    [row.answer for row in rows],
                    eval_set.pattern,
                    eval_set.samples,
                    eval_set.max_new_tokens,
                    eval_set.seed,
                    index,
                )
                if eval_set.pattern is not None:  # the headline accuracy scores final answers
                    generated |= {f"accuracy_{s}": generated[f"acc1_{s}"] for s in SUFFIX.values()}
                for name, values in generated.items():
                    out.setdefault(name, []).extend(values)
            if progress is not None:
                progress(part.stop, len(eval_set))
    return out


def _summary(values: list[float], rate: bool) -> tuple[float, float]:
    present = [v for v in values if not math.isnan(v)]
    if not present:
        return math.nan, math.nan
    mean = sum(present) / len(present)
    if rate:
        return mean, binomial_stderr(mean, len(present))
    if len(present) < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in present) / (len(present) - 1)
    return mean, math.sqrt(variance / len(present))


def summarise(per_row: dict[str, list[float]], rows: list[Row], seen_in_training: bool) -> Evaluation:
    values, stderr, per_category = {}, {}, {}
    for name, column in per_row.items():
        if all(math.isnan(v) for v in column):
            continue  # accuracy without any reference answer: absent, not 0
        rate = name.split("_")[0] in RATES
        values[name], stderr[name] = _summary(column, rate)
        categories = sorted({row.category for row in rows if row.category is not None})
        if categories and name.startswith(CATEGORISED):
            per_category[name] = {
                c: _summary([v for v, row in zip(column, rows) if row.category == c], rate)[0] for c in categories
            }
    return Evaluation(values, stderr, len(rows), seen_in_training, per_category)


def evaluate(
    pair, eval_set: EvalSet, model=None, progress: Progress | None = None, check_grounding: bool = True
) -> Evaluation:
    """The metrics of `model` (default: the pair's student) on `eval_set`.

    With `check_grounding`, also whether the teacher and `model` read the image (`vlod_core.grounding`, on a
    few of the rows; a warning is logged for a model that ignores it): `Evaluation.grounding`.
    """
    from vlod_core.grounding import check_pair

    model = model if model is not None else pair.student
    per_row = per_row_metrics(model, pair, eval_set, progress)
    result = summarise(per_row, eval_set.rows, eval_set.seen_in_training)
    result = dataclasses.replace(result, settings=eval_set.settings())
    if check_grounding:
        result = dataclasses.replace(result, grounding=check_pair(pair, eval_set.rows, student=model).to_dict())
    return result


@torch.no_grad()
def exact_match(
    model, processor, rows: list[Row], vocab_size: int, ablation: str = "remove", batch_size: int = 128
) -> dict[str, torch.Tensor]:
    """Per-row booleans per context: would `model`'s greedy answer be the reference? No teacher needed
    (the toy build measures each model alone with it)."""
    tokenizer, pad = processor.tokenizer, processor.tokenizer.pad_token_id
    out: dict[str, list[torch.Tensor]] = {context: [] for context in SUFFIX}
    with eval_mode(model):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            prompts = encode_rows(processor, [r.load_image() for r in chunk], [r.question for r in chunk], ablation)
            prompts.to(model.device)
            references = [reference_ids(tokenizer, r.answer) for r in chunk]
            ids, mask = _padded(references, pad, model.device)
            for context in SUFFIX:
                inputs = with_responses(prompts.encoded[("student", context)], references, pad)
                logprobs = context_logprobs(model, inputs, ids.shape[1], vocab_size)
                out[context].append(((logprobs.argmax(-1) == ids) | ~mask).all(-1).cpu())
    return {context: torch.cat(hits) for context, hits in out.items()}


def reference_accuracy(model, processor, rows: list[Row], vocab_size: int, ablation: str = "remove") -> Evaluation:
    """`accuracy_image` / `accuracy_no_image` (with standard errors and per category) of one model alone."""
    hits = exact_match(model, processor, rows, vocab_size, ablation)
    per_row = {f"accuracy_{suffix}": hits[context].float().tolist() for context, suffix in SUFFIX.items()}
    return summarise(per_row, rows, False)


def teacher_accuracy(pair, eval_set: EvalSet) -> dict[str, float]:
    """The teacher's own accuracy (greedy answer = reference), per context, with standard errors.

    With an answer pattern, its greedy answers are scored by their final answers, as the student's are, and
    its `format_errors` are reported beside (over every row)."""
    reference = eval_set.teacher_reference(pair)
    out = {}
    with_answers = [i for i, row in enumerate(eval_set.rows) if row.answer is not None]
    pattern = eval_set.pattern
    for context, suffix in SUFFIX.items():
        answers = reference.answers[context]
        if pattern is not None:
            texts = [decode(pair.tokenizer, ids) for ids in answers]
            errors = sum(final_answer(t, pattern) is None for t in texts) / len(texts)
            out[f"format_errors_{suffix}"] = errors
            out[f"format_errors_{suffix}_stderr"] = binomial_stderr(errors, len(texts))
        if not with_answers:
            continue
        if pattern is not None:
            right = [is_correct(texts[i], eval_set.rows[i].answer, pattern) for i in with_answers]
        else:
            right = [answers[i] == reference_ids(pair.tokenizer, eval_set.rows[i].answer) for i in with_answers]
        value = sum(right) / len(right)
        out[f"accuracy_{suffix}"] = value
        out[f"accuracy_{suffix}_stderr"] = binomial_stderr(value, len(right))
    return out


def greedy_answers(pair, model, rows: list[Row], ablation: str = "remove") -> list[dict]:
    """Greedy answers of `model` with and without the image for a few rows (and each reference, if any)."""
    if not rows:
        return []
    prompts = encode(pair, [r.load_image() for r in rows], [r.question for r in rows], ablation)
    with torch.no_grad():
        answers = {c: sample(model, pair, prompts, GREEDY, context=c) for c in SUFFIX}
    out = []
    for i, row in enumerate(rows):
        entry = {"question": row.question, "label": row.label, "thumbnail": thumbnail_uri(row.load_image())}
        if row.answer is not None:
            entry["reference"] = row.answer
        entry |= {suffix: decode(pair.tokenizer, answers[c][i]) for c, suffix in SUFFIX.items()}
        out.append(entry)
    return out
