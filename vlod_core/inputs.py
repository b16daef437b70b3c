"""Model inputs for the two contexts of METHOD.md: the image kept, and the image ablated.

Prompts are encoded once per batch (`encode_rows`): each model's processor is called once per context, and
the result serves both sampling (left-aligned in `sampling.py`) and scoring (responses appended here). When
the teacher encodes images differently from the student (another image size or image-token count), the
teacher's prompts come from its own processor; the response ids (one shared tokenizer) are appended to
each, so both models score exactly the same tokens.

The default ablation removes the image entry from the chat message (no placeholder tokens at all); `blank`
and `blur` keep the placeholders and swap the pixels. Rows are right-padded: causal attention never looks at
later padding, so each row scores exactly as it would alone, and no position ids need fixing. Whatever the
processor returns besides ids (pixel values, grid sizes, per-token type ids) is carried through untouched,
which is what keeps this file free of model-family special cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter

ABLATIONS = ("remove", "blank", "blur")


def ablation_setting():
    """The `ablation` field of every config that scores without the image (one wording, one default)."""
    from vlod_core.settings import setting

    return setting(
        "remove",
        choices=ABLATIONS,
        label="Without the image means",
        help="what 'without the image' means: remove (the paper's default) drops the image entry from the message, "
        "so there are no image tokens at all; blank and blur keep a neutral image",
    )


CONTEXTS = ("image", "ablated")
ROLES = ("student", "teacher")
BLUR_RADIUS_FRACTION = 0.08  # of the image's shorter side


def messages(question: str, with_image: bool) -> list[dict]:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def render_prompt(processor, question: str, with_image: bool) -> str:
    return processor.apply_chat_template(messages(question, with_image), add_generation_prompt=True, tokenize=False)


def ablate(image: Image.Image, ablation: str) -> Image.Image | None:
    """The image as the ablated context sees it; None means removed from the message."""
    if ablation == "remove":
        return None
    if ablation == "blank":
        return Image.new("RGB", image.size, (128, 128, 128))
    if ablation == "blur":
        radius = max(1.0, BLUR_RADIUS_FRACTION * min(image.size))
        return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))
    raise ValueError(f"unknown ablation {ablation!r}; expected one of {ABLATIONS}")


def encode_prompts(processor, questions: list[str], images: list[Image.Image | None]) -> dict:
    """Processor output for chat-formatted prompts, one row each, right-padded, no response yet."""
    with_image = [im is not None for im in images]
    if any(with_image) and not all(with_image):
        raise ValueError("a batch of prompts must either all have images or none")
    rows = list(zip(questions, with_image))
    rendered = {row: render_prompt(processor, *row) for row in dict.fromkeys(rows)}  # each distinct prompt once
    texts = [rendered[row] for row in rows]
    # Padding side given per call: the tokenizer's own setting lives on a backend other sessions share.
    kwargs = {"text": texts, "return_tensors": "pt", "padding": True, "padding_side": "right"}
    if all(with_image):
        # One list per row: SmolVLM's and Gemma 3's processors read a flat list as one row's images.
        kwargs["images"] = [[im.convert("RGB")] for im in images]
    return dict(processor(**kwargs))


@dataclass
class PromptBatch:
    """A batch of (image, question) rows encoded once: `encoded[(role, context)]` is processor output.

    The teacher's entries are the student's own objects when one processor serves both models.
    """

    images: list[Image.Image]
    questions: list[str]
    ablation: str
    encoded: dict[tuple[str, str], dict]

    @property
    def contexts(self) -> tuple[str, ...]:
        return tuple(c for c in CONTEXTS if ("student", c) in self.encoded)

    def __len__(self) -> int:
        return len(self.questions)

    def to(self, device) -> "PromptBatch":
        moved: dict[int, dict] = {}  # shared entries stay shared
        for key, value in self.encoded.items():
            if id(value) not in moved:
                moved[id(value)] = {k: v.to(device) if torch.is_tensor(v) else v for k, v in value.items()}
            self.encoded[key] = moved[id(value)]
        return self


def encode_rows(
    processor,
    images: list[Image.Image],
    questions: list[str],
    ablation: str = "remove",
    contexts: tuple[str, ...] = CONTEXTS,
    teacher_processor=None,
) -> PromptBatch:
    """Encode every row for the requested contexts, with the teacher's own processor if it has one."""
    if len(images) != len(questions):
        raise ValueError("images and questions must have the same length")
    if not images:
        raise ValueError("a batch needs at least one row")
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; expected one of {ABLATIONS}")
    images = [im.convert("RGB") for im in images]
    context_images = {"image": images, "ablated": [ablate(im, ablation) for im in images]}
    encoded = {}
    for context in contexts:
        encoded[("student", context)] = encode_prompts(processor, questions, context_images[context])
        encoded[("teacher", context)] = (
            encoded[("student", context)]
            if teacher_processor is None
            else encode_prompts(teacher_processor, questions, context_images[context])
        )
    return PromptBatch(images, questions, ablation, encoded)


@dataclass
class ContextInputs:
    """Model kwargs for one context plus where each row's response sits in it."""

    model_kwargs: dict[str, torch.Tensor]
    prompt_lengths: list[int]


def with_responses(encoded: dict, responses: list[list[int]], pad_id: int) -> ContextInputs:
    """Append each response after its prompt's real tokens; per-token tensors (B, L) get re-laid too."""
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    prompt_lengths = mask.sum(-1).tolist()
    length = max(p + len(r) for p, r in zip(prompt_lengths, responses))
    per_token = [k for k, v in encoded.items() if torch.is_tensor(v) and v.shape == ids.shape]
    out = {k: torch.zeros((ids.shape[0], length), dtype=encoded[k].dtype, device=ids.device) for k in per_token}
    out["input_ids"].fill_(pad_id)
    for row, (p, response) in enumerate(zip(prompt_lengths, responses)):
        for key in per_token:
            out[key][row, :p] = encoded[key][row, :p]
        out["input_ids"][row, p : p + len(response)] = torch.tensor(response, dtype=ids.dtype)
        out["attention_mask"][row, : p + len(response)] = 1
    rest = {k: v for k, v in encoded.items() if k not in per_token}
    return ContextInputs({**rest, **out}, prompt_lengths)


@dataclass
class ScoringBatch:
    """Both models' contexts of a batch with the same response ids. `response_ids` (B, T) is right-padded.

    `inputs[(role, context)]`; the ablated entries are absent when the batch is scored with the image only.
    """

    inputs: dict[tuple[str, str], ContextInputs]
    response_ids: torch.Tensor  # (B, T)
    response_mask: torch.Tensor  # (B, T) bool

    @property
    def has_ablated(self) -> bool:
        return ("student", "ablated") in self.inputs

    def context(self, role: str, context: str) -> ContextInputs | None:
        return self.inputs.get((role, context))


def response_tensors(responses: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded ids and their mask."""
    longest = max(map(len, responses))
    ids = torch.full((len(responses), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(responses), longest), dtype=torch.bool)
    for row, response in enumerate(responses):
        ids[row, : len(response)] = torch.tensor(response, dtype=torch.long)
        mask[row, : len(response)] = True
    return ids, mask


def build_scoring_batch(
    prompts: PromptBatch, responses: list[list[int]], pad_id: int, contexts: tuple[str, ...] | None = None
) -> ScoringBatch:
    """Inputs for the passes of `contexts` (default: every context the prompts were encoded for)."""
    if len(responses) != len(prompts):
        raise ValueError("need one response per prompt")
    if any(len(r) == 0 for r in responses):
        raise ValueError("every response needs at least one token")
    contexts = contexts or prompts.contexts
    built: dict[int, ContextInputs] = {}
    inputs = {}
    for role in ROLES:
        for context in contexts:
            encoded = prompts.encoded[(role, context)]
            if id(encoded) not in built:  # the teacher reuses the student's inputs when they share a processor
                built[id(encoded)] = with_responses(encoded, responses, pad_id)
            inputs[(role, context)] = built[id(encoded)]
    device = prompts.encoded[("student", contexts[0])]["input_ids"].device
    ids, mask = response_tensors(responses, pad_id)
    return ScoringBatch(inputs, ids.to(device), mask.to(device))
