"""Tiny random teacher/student pairs of real VLM families, saved as the Hub ships them.

The toy pair is one family (LLaVA). These builders make pairs of the families vlod's presets name, with
each family's own model, image processor and processor classes and its own chat template, so the core's
loading, compatibility check and scoring are held to what a user's download looks like:

| pair | classes | what is special |
|---|---|---|
| `llava` | Llava + CLIP tower | CLS token dropped by the processor's `num_additional_image_tokens` |
| `qwen2_5_vl` | Qwen2.5-VL | 3-D rotary positions from `mm_token_type_ids`, `image_grid_thw`; teacher and student embedding tables of different sizes (padded rows, as Qwen2.5-VL-3B/7B) |
| `qwen3_vl` | Qwen3-VL | as Qwen2.5-VL, plus deepstack features and a video processor config |
| `smolvlm` | Idefics3 (SmolVLM-256M/500M's classes) | 5-D `pixel_values` of image crops, `pixel_attention_mask`, row/column tokens |
| `smolvlm2` | SmolVLM (SmolVLM2's classes) | as `smolvlm`, with a processor that needs a video processor |
| `gemma3` | Gemma 3 + SigLIP | `token_type_ids` (image tokens attend both ways) |
| `mixed` | Idefics3 | the teacher's processor makes bigger images and more image tokens than the student's |

Folders hold what the Hub holds: `config.json`, `generation_config.json`, `model.safetensors`, the tokenizer
files, the chat template and the processor files. Families whose stock processor can be built here are
saved with its `save_pretrained`; the processors that need a video processor (Qwen2.5-VL, Qwen3-VL, SmolVLM2:
torchvision is not installed) are written file by file as their Hub repositories have them
(`preprocessor_config.json`, `video_preprocessor_config.json`, `chat_template.json` ...), so loading them
walks the same path a downloaded checkpoint does. Tokenizers are the toy word-level one with each family's
special tokens (`vlod_core.toy.tokenizer`); real chat templates are used as published (Qwen3-VL's without
its tool-call and reasoning branches). Weights are random at a large init scale (see `INIT_RANGE`), so a
lost input moves log-probs visibly. Building all pairs takes seconds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vlod_core.toy.tokenizer import build_tokenizer

# Random weights at the usual 0.02 scale give near-uniform outputs on which a dropped input hides under test
# tolerances; at this scale the image and the per-token inputs move log-probs by whole nats.
INIT_RANGE = 0.3

# Words the families' chat templates render (default system prompt, role names).
TEMPLATE_WORDS = ("system", "you", "are", "a", "helpful", "assistant", "user", "model", ":", "picture")

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Size:
    """Width and depth of one tiny model; `extra_rows` pads the embedding table past the tokenizer."""

    hidden: int
    layers: int
    heads: int = 2
    vision_hidden: int = 32
    vision_layers: int = 2
    extra_rows: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


TEACHER = Size(hidden=64, layers=2, heads=4)
STUDENT = Size(hidden=32, layers=1, heads=2)


# --- chat templates as the Hub repositories publish them --------------------------------------------------------

LLAVA_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf, chat_template.json
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2_5_VL_TEMPLATE = (  # Qwen/Qwen2.5-VL-3B-Instruct, chat_template.json
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN3_VL_TEMPLATE = (  # Qwen/Qwen3-VL-2B-Instruct, chat_template.json without its tool-call branches
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].content is string %}{{- messages[0].content }}{%- else %}"
    "{%- for content in messages[0].content %}{%- if 'text' in content %}{{- content.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- set image_count = namespace(value=0) %}{%- set video_count = namespace(value=0) %}"
    "{%- for message in messages %}{%- if message.role == 'user' or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "{%- set image_count.value = image_count.value + 1 %}"
    "{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content.type == 'video' or 'video' in content %}{%- set video_count.value = video_count.value + 1 %}"
    "{%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

GEMMA3_TEMPLATE = (  # google/gemma-3-4b-it, chat_template.json
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    '{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = "" -%}'
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    '{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}{%- endif -%}'
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- else -%}{{ raise_exception(\"Invalid content type\") }}"
    "{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}"
    "{%- endif -%}\n"
)


def _smolvlm_template() -> str:
    # SmolVLM-256M/500M-Instruct's chat_template.json is transformers' SmolVLM default, word for word.
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    return DEFAULT_CHAT_TEMPLATE


# --- small helpers ---------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _text_config(size: Size, tokenizer, **extra) -> dict:
    return dict(
        vocab_size=len(tokenizer) + size.extra_rows,
        hidden_size=size.hidden,
        intermediate_size=2 * size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=512,
        initializer_range=INIT_RANGE,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def _finish(model, tokenizer):
    """Generation settings every family writes to generation_config.json."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _save_processor_files(path: Path, tokenizer, files: dict[str, dict], template: str) -> None:
    """Processor files written one by one (stock processors that cannot be built without torchvision)."""
    tokenizer.save_pretrained(path)
    (path / "chat_template.jinja").unlink(missing_ok=True)  # these repositories keep it in chat_template.json
    for name, data in files.items():
        _write_json(path / name, data)
    _write_json(path / "chat_template.json", {"chat_template": template})


# --- the families ------------------------------------------------------------------------------------------------
# Each builder saves one model of the given size, with its processor files, into `path`.


def _llava(size: Size, path: Path, seed: int) -> None:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip import CLIPImageProcessorPil

    tokenizer = build_tokenizer(
        ("<image>",), template=LLAVA_TEMPLATE, extra_words=TEMPLATE_WORDS, bos="<s>", eos="</s>", pad="<pad>"
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 28},
        crop_size={"height": 28, "width": 28},
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, which the "default" strategy drops again
        chat_template=LLAVA_TEMPLATE,
        image_token="<image>",
    )
    vision = CLIPVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        initializer_range=INIT_RANGE,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**_text_config(size, tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        initializer_range=INIT_RANGE,
    )
    with _seeded(seed):
        model = _finish(LlavaForConditionalGeneration(config), tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)


QWEN_TOKENS = ("<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _qwen_tokenizer(template: str):
    return build_tokenizer(
        QWEN_TOKENS, template=template, extra_words=TEMPLATE_WORDS, bos="<|endoftext|>", eos="<|im_end|>",
        pad="<|endoftext|>",
    )  # fmt: skip


def _qwen_token_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _mrope_section(head_dim: int) -> list[int]:
    """Split of the rotary half-dimension into (temporal, height, width) sections."""
    half = head_dim // 2
    return [half - 2 * (half // 3), half // 3, half // 3]


def _qwen2_5_vl(size: Size, path: Path, seed: int) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = _qwen_tokenizer(QWEN2_5_VL_TEMPLATE)
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": _mrope_section(size.head_dim)}
    vision = dict(
        depth=size.vision_layers,
        hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden,
        num_heads=2,
        out_hidden_size=size.hidden,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,  # 2x2 merged tokens per window: the tiny image spans several windows
        fullatt_block_indexes=[size.vision_layers - 1],
        initializer_range=INIT_RANGE,
    )
    config = Qwen2_5_VLConfig(
        text_config=_text_config(size, tokenizer, rope_parameters=rope),
        vision_config=vision,
        tie_word_embeddings=size.extra_rows == 0,  # like the 3B (tied) and 7B (untied) checkpoints
        initializer_range=INIT_RANGE,
        **_qwen_token_ids(tokenizer),
    )
    with _seeded(seed):
        model = _finish(Qwen2_5_VLForConditionalGeneration(config), tokenizer)
    model.save_pretrained(path)
    # Qwen2.5-VL-*-Instruct ships preprocessor_config.json (no processor_config.json, no video config).
    image = dict(
        do_convert_rgb=True, do_normalize=True, do_rescale=True, do_resize=True, image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD), max_pixels=112 * 112, min_pixels=112 * 112, merge_size=2, patch_size=14,
        resample=3, rescale_factor=1 / 255, temporal_patch_size=2,
        image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5_VLProcessor",
    )  # fmt: skip
    _save_processor_files(path, tokenizer, {"preprocessor_config.json": image}, QWEN2_5_VL_TEMPLATE)


def _qwen3_vl(size: Size, path: Path, seed: int) -> None:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = _qwen_tokenizer(QWEN3_VL_TEMPLATE)
    rope = {
        "rope_type": "default", "rope_theta": 5000000.0, "mrope_section": _mrope_section(size.head_dim),
        "mrope_interleaved": True,
    }  # fmt: skip
    vision = dict(
        depth=size.vision_layers,
        hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden,
        num_heads=2,
        out_hidden_size=size.hidden,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=16,  # a 4x4 grid of learned positions, interpolated to each image's grid
        deepstack_visual_indexes=[0],
        initializer_range=INIT_RANGE,
    )
    config = Qwen3VLConfig(
        text_config=_text_config(size, tokenizer, rope_parameters=rope, head_dim=size.head_dim),
        vision_config=vision,
        tie_word_embeddings=True,  # Qwen3-VL-2B ties its embeddings; 8B does not
        initializer_range=INIT_RANGE,
        **_qwen_token_ids(tokenizer),
    )
    with _seeded(seed):
        model = _finish(Qwen3VLForConditionalGeneration(config), tokenizer)
    model.save_pretrained(path)
    # Qwen3-VL-*-Instruct ships preprocessor_config.json and video_preprocessor_config.json.
    common = dict(
        image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD), merge_size=2, patch_size=16, temporal_patch_size=2,
        processor_class="Qwen3VLProcessor",
    )  # fmt: skip
    image = dict(
        common, size={"longest_edge": 128 * 128, "shortest_edge": 128 * 128},
        image_processor_type="Qwen2VLImageProcessorFast",
    )  # fmt: skip
    video = dict(
        common, size={"longest_edge": 25165824, "shortest_edge": 4096}, fps=2, do_sample_frames=True,
        video_processor_type="Qwen3VLVideoProcessor",
    )  # fmt: skip
    files = {"preprocessor_config.json": image, "video_preprocessor_config.json": video}
    _save_processor_files(path, tokenizer, files, QWEN3_VL_TEMPLATE)


SMOLVLM_TOKENS = ("<|im_start|>", "<fake_token_around_image>", "<image>", "<global-img>") + tuple(
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
)


def _smolvlm_parts(size: Size, image_side: int, video: bool):
    """Tokenizer, image processor settings and model config of SmolVLM (Idefics3 classes, or SmolVLM2's)."""
    from transformers import Idefics3Config, LlamaConfig, SmolVLMConfig

    template = _smolvlm_template()
    tokenizer = build_tokenizer(
        SMOLVLM_TOKENS, template=template, extra_words=TEMPLATE_WORDS, bos="<|im_start|>",
        eos="<end_of_utterance>", pad="<|im_end|>",
    )  # fmt: skip
    patch, scale = 8, 2
    image_seq_len = (image_side // patch) ** 2 // scale**2
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=2,
        image_size=image_side,
        patch_size=patch,
        initializer_range=INIT_RANGE,
    )
    config_class = SmolVLMConfig if video else Idefics3Config
    config = config_class(
        vision_config=vision,
        text_config=LlamaConfig(**_text_config(size, tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
        tie_word_embeddings=True,
        initializer_range=INIT_RANGE,
    )
    image = dict(
        do_convert_rgb=True, do_image_splitting=True, do_normalize=True, do_pad=True, do_rescale=True,
        do_resize=True, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD), max_image_size={"longest_edge": image_side},
        resample=1, rescale_factor=1 / 255, size={"longest_edge": 2 * image_side},
    )  # fmt: skip
    return tokenizer, template, config, image, image_seq_len


def _smolvlm(size: Size, path: Path, seed: int, image_side: int = 32) -> None:
    """SmolVLM-256M/500M-Instruct: Idefics3 classes, saved with the stock processor's save_pretrained."""
    from transformers import Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    tokenizer, template, config, image, image_seq_len = _smolvlm_parts(size, image_side, video=False)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(**image),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=template,
    )
    with _seeded(seed):
        model = _finish(Idefics3ForConditionalGeneration(config), tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)


def _smolvlm2(size: Size, path: Path, seed: int) -> None:
    """SmolVLM2: SmolVLM classes, whose processor also holds a video processor (written as files)."""
    from transformers import SmolVLMForConditionalGeneration

    tokenizer, template, config, image, image_seq_len = _smolvlm_parts(size, 32, video=True)
    with _seeded(seed):
        model = _finish(SmolVLMForConditionalGeneration(config), tokenizer)
    model.save_pretrained(path)
    files = {
        "processor_config.json": {"image_seq_len": image_seq_len, "processor_class": "SmolVLMProcessor"},
        "preprocessor_config.json": dict(
            image, image_processor_type="SmolVLMImageProcessor", processor_class="SmolVLMProcessor"
        ),
        "video_preprocessor_config.json": dict(
            image,
            fps=1,
            max_frames=64,
            video_processor_type="SmolVLMVideoProcessor",
            processor_class="SmolVLMProcessor",
        ),
    }
    _save_processor_files(path, tokenizer, files, template)


def _gemma3(size: Size, path: Path, seed: int) -> None:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig
    from transformers.models.gemma3 import Gemma3ImageProcessorPil

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = build_tokenizer(
        ("<start_of_turn>",), template=GEMMA3_TEMPLATE, named_special_tokens=named, extra_words=TEMPLATE_WORDS,
        bos="<bos>", eos="<end_of_turn>", pad="<pad>",
    )  # fmt: skip
    tokens_per_image = 4
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(
            size={"height": 32, "width": 32},
            image_mean=list(IMAGE_MEAN),
            image_std=list(IMAGE_STD),
            do_pan_and_scan=False,
        ),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=GEMMA3_TEMPLATE,
    )
    vision = SiglipVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,  # 4x4 patches, average-pooled to 2x2 = tokens_per_image
        vision_use_head=False,
        initializer_range=INIT_RANGE,
    )
    text = _text_config(size, tokenizer, head_dim=size.head_dim, query_pre_attn_scalar=size.head_dim, sliding_window=8)
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=text,
        vision_config=vision.to_dict(),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=ids(named["boi_token"]),
        eoi_token_index=ids(named["eoi_token"]),
        image_token_index=ids(named["image_token"]),
        initializer_range=INIT_RANGE,
    )
    with _seeded(seed):
        model = _finish(Gemma3ForConditionalGeneration(config), tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)


@contextlib.contextmanager
def _seeded(seed: int):
    """Seeded weights without disturbing the caller's random state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


Builder = Callable[[Size, Path, int], None]


@dataclass(frozen=True)
class FamilyPairRecipe:
    """How one pair is built: a builder per role (the same one unless the roles differ) and the two sizes."""

    teacher: Builder
    student: Builder
    teacher_size: Size = TEACHER
    student_size: Size = STUDENT


def _smolvlm_large(size: Size, path: Path, seed: int) -> None:
    _smolvlm(size, path, seed, image_side=48)  # 9 image tokens per crop instead of 4, as a bigger SmolVLM


def family_pairs() -> dict[str, FamilyPairRecipe]:
    """Pair name -> how it is built."""
    return {
        "llava": FamilyPairRecipe(_llava, _llava),
        "qwen2_5_vl": FamilyPairRecipe(
            _qwen2_5_vl, _qwen2_5_vl, Size(hidden=64, layers=2, heads=4, extra_rows=24), Size(hidden=32, layers=1)
        ),
        "qwen3_vl": FamilyPairRecipe(_qwen3_vl, _qwen3_vl),
        "smolvlm": FamilyPairRecipe(_smolvlm, _smolvlm),
        "smolvlm2": FamilyPairRecipe(_smolvlm2, _smolvlm2),
        "gemma3": FamilyPairRecipe(_gemma3, _gemma3),
        "mixed": FamilyPairRecipe(_smolvlm_large, _smolvlm),
    }


def build_family_pair(family: str, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Save a random teacher and a smaller student of one family under out_dir/{teacher,student}."""
    recipes = family_pairs()
    if family not in recipes:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(recipes)}")
    recipe = recipes[family]
    out_dir = Path(out_dir)
    teacher, student = out_dir / "teacher", out_dir / "student"
    recipe.teacher(recipe.teacher_size, teacher, seed)
    recipe.student(recipe.student_size, student, seed + 1)
    return teacher, student
