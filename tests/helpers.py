"""Small builders the tests share (importable because pytest puts this folder on the path)."""

from __future__ import annotations

from vlod_core.inputs import build_scoring_batch, encode_rows


def scoring_batch(pair, images, questions, responses, ablation="remove", contexts=("image", "ablated")):
    """A `ScoringBatch` for fixed responses, encoded with the pair's processor(s)."""
    prompts = encode_rows(pair.processor, images, questions, ablation, contexts, pair.teacher_processor)
    return build_scoring_batch(prompts, responses, pair.tokenizer.pad_token_id)
