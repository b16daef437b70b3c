"""One image and one question, looked at closely: the four answers and the per-token decomposition.

This is what `vlod inspect` prints and what the app's first page draws. The response to decompose is
the student's own sample with the image (on-policy), or a typed answer when the user gives one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from PIL import Image

from vlod_core.decomposition import Decomposition, decompose
from vlod_core.engine import encode, sample, score_responses
from vlod_core.evaluation import reference_ids
from vlod_core.inputs import PromptBatch
from vlod_core.pair import ModelPair
from vlod_core.sampling import GREEDY, SamplingConfig, decode
from vlod_core.topk import NextTokens, from_four

ANSWER_KEYS = ("teacher_image", "teacher_no_image", "student_image", "student_no_image")


@dataclass
class Inspection:
    question: str
    answers: dict[str, str]  # ANSWER_KEYS -> greedy answer text
    response: str  # the scored response's text
    decomposition: Decomposition
    ablation: str
    notes: list[str]
    next_tokens: NextTokens  # top-k of the four distributions at each response position (from the same passes)

    @property
    def response_ids(self) -> list[int]:
        """The scored response's token ids."""
        return self.decomposition.ids[0][self.decomposition.mask[0]].tolist()

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answers": self.answers,
            "response": self.response,
            "ablation": self.ablation,
            "tokens": self.decomposition.rows(0),
            "notes": self.notes,
        }


def four_answers(pair: ModelPair, prompts: PromptBatch, max_new_tokens: int = GREEDY.max_new_tokens) -> dict[str, str]:
    """Greedy answers of teacher and student, with the image and with it ablated (prompts encoded once), as long
    as the scored response may be (a reasoning chain needs more than a short answer's few tokens)."""
    greedy = replace(GREEDY, max_new_tokens=max_new_tokens)
    out = {}
    with torch.no_grad():
        for name, model in (("teacher", pair.teacher), ("student", pair.student)):
            for context, suffix in (("image", "image"), ("ablated", "no_image")):
                ids = sample(model, pair, prompts, greedy, role=name, context=context)[0]
                out[f"{name}_{suffix}"] = decode(pair.tokenizer, ids)
    return {k: out[k] for k in ANSWER_KEYS}


def unknown_words(tokenizer, text: str) -> list[str]:
    """Words of `text` the tokenizer maps to its unknown token (the toy vocabulary is small)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, padding=True, padding_side="right")
    return [text[a:b] for i, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]) if i == unk]


def inspect(
    pair: ModelPair,
    image: Image.Image,
    question: str,
    response: str | None = None,
    ablation: str = "remove",
    sampling: SamplingConfig = SamplingConfig(),
    seed: int = 0,
    top_k: int = 5,
) -> Inspection:
    """Four answers, then the decomposition of the student's sampled (or the given) response."""
    notes = []
    unknown = unknown_words(pair.tokenizer, question + " " + (response or ""))
    if unknown:
        notes.append(f"not in the model's vocabulary (read as unknown): {', '.join(sorted(set(unknown)))}")
    if response is not None and not response.strip():
        raise ValueError("the answer to score is empty")  # before any generation runs
    prompts = encode(pair, [image], [question], ablation)
    with torch.no_grad():
        ids = (
            reference_ids(pair.tokenizer, response)
            if response is not None
            else sample(pair.student, pair, prompts, sampling, seed)[0]
        )
        answers = four_answers(pair, prompts, sampling.max_new_tokens)
        four = score_responses(pair, prompts, [ids])
    return Inspection(
        question,
        answers,
        decode(pair.tokenizer, ids),
        decompose(four, pair.tokenizer),
        ablation,
        notes,
        from_four(four, pair.tokenizer, top_k),
    )
