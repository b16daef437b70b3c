"""Model inputs for the two contexts of METHOD.md: the image kept, and the image ablated.

The default ablation removes the image entry from the chat message (no placeholder tokens at all); `blank`
and `blur` keep the placeholders and swap the pixels. Responses are tokenized once and appended to both
prompts, so the scored token ids are identical in both contexts by construction. Rows are right-padded:
causal attention never looks at later padding, so each row scores exactly as it would alone, and no
position ids need fixing (left padding is only for generation, in `sampling.py`).

Whatever the processor returns besides ids (pixel values, grid sizes, per-token type ids) is carried
through untouched, which is what keeps this file free of model-family special cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter

ABLATIONS = ("remove", "blank", "blur")
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


@dataclass
class ContextInputs:
    """Model kwargs for one context plus where each row's response sits in it."""

    model_kwargs: dict[str, torch.Tensor]
    prompt_lengths: list[int]


@dataclass
class ScoringBatch:
    """Both contexts of a batch with the same response ids. `response_ids` (B, T) is right-padded."""

    image: ContextInputs
    ablated: ContextInputs | None  # None: built for the image context only (see `with_ablated`)
    response_ids: torch.Tensor  # (B, T)
    response_mask: torch.Tensor  # (B, T) bool

    def to(self, device) -> "ScoringBatch":
        for ctx in (self.image, self.ablated) if self.ablated is not None else (self.image,):
            ctx.model_kwargs = {k: v.to(device) for k, v in ctx.model_kwargs.items()}
        self.response_ids = self.response_ids.to(device)
        self.response_mask = self.response_mask.to(device)
        return self


def encode_prompts(processor, questions: list[str], images: list[Image.Image | None]) -> dict:
    """Processor output for chat-formatted prompts, one row each, right-padded, no response yet."""
    with_image = [im is not None for im in images]
    if any(with_image) and not all(with_image):
        raise ValueError("a batch of prompts must either all have images or none")
    texts = [render_prompt(processor, q, has) for q, has in zip(questions, with_image)]
    kwargs = {"text": texts, "return_tensors": "pt", "padding": True, "padding_side": "right"}
    if all(with_image):
        kwargs["images"] = [im.convert("RGB") for im in images]
    return dict(processor(**kwargs))


def _append_responses(encoded: dict, responses: list[list[int]], pad_id: int) -> ContextInputs:
    """Append each response after its prompt's real tokens; per-token tensors (B, L) get re-laid too."""
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    prompt_lengths = mask.sum(-1).tolist()
    length = max(p + len(r) for p, r in zip(prompt_lengths, responses))
    per_token = [k for k, v in encoded.items() if torch.is_tensor(v) and v.shape == ids.shape]
    out = {k: torch.zeros((ids.shape[0], length), dtype=encoded[k].dtype) for k in per_token}
    out["input_ids"].fill_(pad_id)
    for row, (p, response) in enumerate(zip(prompt_lengths, responses)):
        for key in per_token:
            out[key][row, :p] = encoded[key][row, :p]
        out["input_ids"][row, p : p + len(response)] = torch.tensor(response, dtype=ids.dtype)
        out["attention_mask"][row, : p + len(response)] = 1
    rest = {k: v for k, v in encoded.items() if k not in per_token}
    return ContextInputs({**rest, **out}, prompt_lengths)


def build_scoring_batch(
    processor,
    images: list[Image.Image],
    questions: list[str],
    responses: list[list[int]],
    ablation: str = "remove",
    with_ablated: bool = True,
) -> ScoringBatch:
    """Inputs for the four passes: (image, question, response ids) rows in both contexts.

    `with_ablated=False` skips the ablated context, for a step that needs only the image passes.
    """
    if not (len(images) == len(questions) == len(responses)):
        raise ValueError("images, questions and responses must have the same length")
    if any(len(r) == 0 for r in responses):
        raise ValueError("every response needs at least one token")
    pad_id = processor.tokenizer.pad_token_id
    image_ctx = _append_responses(encode_prompts(processor, questions, images), responses, pad_id)
    ablated_ctx = None
    if with_ablated:
        ablated_images = [ablate(im, ablation) for im in images]
        ablated_ctx = _append_responses(encode_prompts(processor, questions, ablated_images), responses, pad_id)
    longest = max(map(len, responses))
    response_ids = torch.full((len(responses), longest), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(responses), longest), dtype=torch.bool)
    for row, response in enumerate(responses):
        response_ids[row, : len(response)] = torch.tensor(response)
        response_mask[row, : len(response)] = True
    return ScoringBatch(image_ctx, ablated_ctx, response_ids, response_mask)
