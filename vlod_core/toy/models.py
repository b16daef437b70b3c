"""Tiny teacher and student made of transformers' real VLM classes (LLaVA with a SigLIP tower).

They are ordinary `LlavaForConditionalGeneration` checkpoints with an ordinary `LlavaProcessor`, saved with
`save_pretrained` and loaded back through the Auto classes exactly as a Hub checkpoint would be, so the
core library never knows it is talking to a toy. Sizes are chosen for many optimiser steps per second on
two CPU cores (the prototype found ~0.5 M parameters the sweet spot for the teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipVisionConfig
from transformers.models.siglip import SiglipImageProcessorPil

from vlod_core.toy import world
from vlod_core.toy.tokenizer import IMAGE, build_tokenizer

# Background (black) maps to 0 rather than a large negative value: tiny towers learn much faster.
IMAGE_MEAN = (0.0, 0.0, 0.0)
IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ToyModelSize:
    """Width and depth of one toy model; both towers share `hidden`."""

    hidden: int
    layers: int
    heads: int = 4
    vision_layers: int = 1  # one object per patch: the tower only needs patch-local features
    vision_hidden: int | None = None  # None: `hidden`; the student shares the teacher's (wider) tower
    init_std: float = 0.02  # transformers' initializer_range

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")


TEACHER_SIZE = ToyModelSize(hidden=96, layers=2, init_std=0.08)
# The student's vision tower has the teacher's shape so both can use the one pretrained tower (`toy.tower`):
# what the student lacks is reading its features, the part distillation can teach within a minute.
STUDENT_SIZE = ToyModelSize(hidden=48, layers=2, vision_hidden=TEACHER_SIZE.hidden, init_std=0.08)


def build_processor(tokenizer=None) -> LlavaProcessor:
    """The toy processor around `tokenizer` (default: the toy world's)."""
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    image_processor = SiglipImageProcessorPil(
        do_resize=True,
        size={"height": world.IMAGE_SIZE, "width": world.IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=world.CELL,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        chat_template=tokenizer.chat_template,
        image_token=IMAGE,
    )


def build_model(size: ToyModelSize, processor: LlavaProcessor) -> LlavaForConditionalGeneration:
    tokenizer = processor.tokenizer
    vision_hidden = size.vision_hidden or size.hidden
    vision = SiglipVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.heads,
        image_size=world.IMAGE_SIZE,
        patch_size=world.CELL,
        vision_use_head=False,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=2 * size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=128,
        initializer_range=size.init_std,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        vision_feature_layer=-1,  # the default -2 would leave the last layer of a 2-layer tower unused
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
        initializer_range=size.init_std,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def pixel_values(images: list[Image.Image] | list) -> "torch.Tensor":  # noqa: F821
    """Fast path for training: what the processor computes for 64x64 RGB toy images, in one numpy op."""
    import numpy as np
    import torch

    arrays = np.stack([np.asarray(im, dtype=np.float32) for im in images])  # (B, H, W, 3)
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32) * 255
    std = np.asarray(IMAGE_STD, dtype=np.float32) * 255
    return torch.from_numpy((arrays - mean) / std).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
