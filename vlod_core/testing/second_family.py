"""A tiny random Qwen2-VL teacher/student pair: a second model family for the core's tests.

The toy pair is LLaVA, whose image tokens sit at ordinary 1-D positions and whose processor returns only
ids, a mask and pixel values. Qwen2-VL differs wherever a family can differ: a variable number of image
tokens per image (`image_grid_thw`), image-only tensors flattened over patches rather than batched per row,
multimodal (3-D) rotary positions computed from `mm_token_type_ids`, and image tokens wrapped in
`<|vision_start|>`/`<|vision_end|>` markers. Running the core's checks on this pair proves nothing
LLaVA-specific hides in `inputs.py`, `scoring.py`, `pair.py` or `sampling.py`.

The weights are random (nothing is trained); both checkpoints are saved with `save_pretrained` and load back
through the Auto classes like any Hub checkpoint. The stock `Qwen2VLProcessor` needs a video processor, which
needs torchvision; it is built and saved here for images only (`vlod_core.processors.image_only_class`), and
saved as a stock `Qwen2VLProcessor`, which `load_pair` loads the way it loads any download (see
`vlod_core/testing/families.py` for more families in their Hub layout). Everything is tiny so a test builds the pair in seconds: a 64x64 toy image is resized to 56x56, cut into
4x4 patches of 14 pixels and merged 2x2 into 4 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from vlod_core.processors import image_only_class
from vlod_core.toy.tokenizer import build_tokenizer

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
IMAGE_PLACEHOLDER = f"{VISION_START}{IMAGE_PAD}{VISION_END}"

PATCH = 14
MERGE = 2
IMAGE_SIDE = PATCH * MERGE * 2  # 56: every image becomes a 4x4 patch grid, i.e. 4 tokens after merging


# Random weights at the usual 0.02 scale give near-uniform outputs on which a wrong position or a lost image
# would hide under test tolerances (a 1-D instead of 3-D rotary position moves log-probs by ~4e-4); at this
# scale it moves them by several nats, and the image changes the teacher's next-token distribution visibly.
INIT_RANGE = 0.3


@dataclass(frozen=True)
class QwenToySize:
    """Width and depth of one tiny Qwen2-VL; the vision merger projects into `hidden`."""

    hidden: int
    layers: int
    heads: int = 2
    vision_dim: int = 32
    vision_heads: int = 2
    vision_depth: int = 1

    @property
    def mrope_section(self) -> list[int]:
        """Split of the rotary half-dimension into (temporal, height, width) sections."""
        half = self.hidden // self.heads // 2
        return [half - 2 * (half // 3), half // 3, half // 3]


TEACHER_SIZE = QwenToySize(hidden=64, layers=2, heads=4)
STUDENT_SIZE = QwenToySize(hidden=32, layers=1, heads=2)


def build_processor() -> Qwen2VLProcessor:
    tokenizer = build_tokenizer(
        extra_special_tokens=(VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD), image_placeholder=IMAGE_PLACEHOLDER
    )
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_SIDE * IMAGE_SIDE,
        max_pixels=IMAGE_SIDE * IMAGE_SIDE,
        patch_size=PATCH,
        temporal_patch_size=2,
        merge_size=MERGE,
    )
    return image_only_class(Qwen2VLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
    )


def build_model(size: QwenToySize, processor: Qwen2VLProcessor) -> Qwen2VLForConditionalGeneration:
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=2 * size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": size.mrope_section},
        tie_word_embeddings=True,
        initializer_range=INIT_RANGE,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(
        depth=size.vision_depth,
        embed_dim=size.vision_dim,
        hidden_size=size.hidden,  # the merger projects straight into the language model's width
        mlp_ratio=2,
        num_heads=size.vision_heads,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=2,
        initializer_range=INIT_RANGE,
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids(IMAGE_PAD),
        video_token_id=ids(VIDEO_PAD),
        vision_start_token_id=ids(VISION_START),
        vision_end_token_id=ids(VISION_END),
        tie_word_embeddings=True,
        initializer_range=INIT_RANGE,
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def build_qwen2vl_pair(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Save a random Qwen2-VL teacher and a smaller student under out_dir/{teacher,student}; returns both.

    Both share one tokenizer and chat template (so `check_compatible` passes) and differ in size and init.
    """
    out_dir = Path(out_dir)
    paths = []
    for offset, (name, size) in enumerate((("teacher", TEACHER_SIZE), ("student", STUDENT_SIZE))):
        processor = build_processor()
        with torch.random.fork_rng():  # seeded weights without disturbing the caller's random state
            torch.manual_seed(seed + offset)
            model = build_model(size, processor)
        path = out_dir / name
        model.save_pretrained(path)
        processor.save_pretrained(path)
        paths.append(path)
    return paths[0], paths[1]
