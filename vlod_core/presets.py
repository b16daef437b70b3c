"""Real teacher/student pairs vlod names as presets, with the published config values of each model.

The values are what each model's `config.json` on the Hub says, as far as we could read them without network
access (through a search index of Hub pages, 2026-12): `SOURCES` says what was seen for each model and what
was taken from the family's defaults. From them `preset_configs` builds the real architectures' configs, so
the memory estimate (`vlod_core.memory`) and benchmarks can instantiate the real shapes with random weights
(or on the meta device) where the weights cannot be downloaded. Nothing here was run with real weights.
"""

from __future__ import annotations

from dataclasses import dataclass


def published_configs() -> dict[str, dict]:
    """Model id -> the values its config.json holds (a fresh dict each call: callers may edit it)."""
    qwen_tokens = dict(
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653
    )
    return {
        "HuggingFaceTB/SmolVLM-256M-Instruct": dict(
            model_type="idefics3",
            image_token_id=49190,
            scale_factor=4,
            tie_word_embeddings=False,
            text_config=dict(
                model_type="llama",
                vocab_size=49280,
                hidden_size=576,
                intermediate_size=1536,
                num_hidden_layers=30,
                num_attention_heads=9,
                num_key_value_heads=3,
                head_dim=64,
                bos_token_id=0,
                eos_token_id=49279,
                pad_token_id=2,
            ),
            vision_config=dict(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                image_size=512,
                patch_size=16,
            ),
        ),  # fmt: skip
        "HuggingFaceTB/SmolVLM-500M-Instruct": dict(
            model_type="idefics3",
            image_token_id=49190,
            scale_factor=4,
            tie_word_embeddings=False,
            text_config=dict(
                model_type="llama",
                vocab_size=49280,
                hidden_size=960,
                intermediate_size=2560,
                num_hidden_layers=32,
                num_attention_heads=15,
                num_key_value_heads=5,
                head_dim=64,
                bos_token_id=0,
                eos_token_id=49279,
                pad_token_id=2,
            ),
            vision_config=dict(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                image_size=512,
                patch_size=16,
            ),
        ),  # fmt: skip
        "Qwen/Qwen2.5-VL-3B-Instruct": dict(
            model_type="qwen2_5_vl",
            tie_word_embeddings=True,
            **qwen_tokens,
            text_config=dict(
                vocab_size=151936,
                hidden_size=2048,
                intermediate_size=11008,
                num_hidden_layers=36,
                num_attention_heads=16,
                num_key_value_heads=2,
                tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            ),
            vision_config=dict(
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                num_heads=16,
                out_hidden_size=2048,
                patch_size=14,
                spatial_merge_size=2,
                window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31],
            ),
        ),  # fmt: skip
        "Qwen/Qwen2.5-VL-7B-Instruct": dict(
            model_type="qwen2_5_vl",
            tie_word_embeddings=False,
            **qwen_tokens,
            text_config=dict(
                vocab_size=152064,
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            ),
            vision_config=dict(
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                num_heads=16,
                out_hidden_size=3584,
                patch_size=14,
                spatial_merge_size=2,
                window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31],
            ),
        ),  # fmt: skip
        "Qwen/Qwen3-VL-2B-Instruct": dict(
            model_type="qwen3_vl",
            tie_word_embeddings=True,
            **qwen_tokens,
            text_config=dict(
                vocab_size=151936,
                hidden_size=2048,
                intermediate_size=6144,
                num_hidden_layers=28,
                num_attention_heads=16,
                num_key_value_heads=8,
                head_dim=128,
                tie_word_embeddings=True,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 5000000,
                    "mrope_section": [24, 20, 20],
                    "mrope_interleaved": True,
                },
            ),
            vision_config=dict(
                depth=24,
                hidden_size=1024,
                intermediate_size=4096,
                num_heads=16,
                out_hidden_size=2048,
                patch_size=16,
                spatial_merge_size=2,
                num_position_embeddings=2304,
                deepstack_visual_indexes=[5, 11, 17],
            ),
        ),  # fmt: skip
        "Qwen/Qwen3-VL-8B-Instruct": dict(
            model_type="qwen3_vl",
            tie_word_embeddings=False,
            **qwen_tokens,
            text_config=dict(
                vocab_size=151936,
                hidden_size=4096,
                intermediate_size=12288,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 5000000,
                    "mrope_section": [24, 20, 20],
                    "mrope_interleaved": True,
                },
            ),
            vision_config=dict(
                depth=27,
                hidden_size=1152,
                intermediate_size=4304,
                num_heads=16,
                out_hidden_size=4096,
                patch_size=16,
                spatial_merge_size=2,
                num_position_embeddings=2304,
                deepstack_visual_indexes=[8, 16, 24],
            ),
        ),  # fmt: skip
    }


# What was checked against Hub pages (search index, 2026-12), and what was not: (model id, note) pairs.
SOURCES: tuple[tuple[str, str], ...] = (
    (
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "seen: processor_config.json (image_seq_len 64, Idefics3Processor), generation_config.json (bos 0, eos "
        "49279, pad 2), a copy of config.json (idefics3, image_token_id 49190, scale_factor 4, text hidden 576, "
        "30 layers, 9 heads, 3 KV heads, head_dim 64, intermediate 1536). not seen: vocab_size (49280 taken "
        "from eos 49279 being the last id) and the vision tower (SigLIP base patch-16 at 512 px: 768/12 layers)",
    ),
    (
        "HuggingFaceTB/SmolVLM-500M-Instruct",
        "seen: processor_config.json (image_seq_len 64), generation_config.json (eos 49279), a copy of config.json "
        "(image_token_id 49190, scale_factor 4, text hidden 960, 15 heads, 5 KV heads, intermediate 2560). not "
        "seen: layer count (32), vocab_size (49280) and the vision tower (as the 256M)",
    ),
    (
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "seen: config.json copies (vocab 151936, hidden 2048, 36 layers, 16 heads, 2 KV heads, intermediate 11008, "
        "tied embeddings, image_token_id 151655, video 151656, vision start/end 151652/151653, mrope [16, 24, 24], "
        "vision hidden 1280, out 2048, patch 14). vision depth/intermediate/heads: transformers' Qwen2.5-VL "
        "defaults (32, 3420, 16)",
    ),
    (
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "seen: config.json copies (vocab 152064, hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate "
        "18944, untied, the same token ids and vision hidden 1280). vision depth etc.: as the 3B",
    ),
    (
        "Qwen/Qwen3-VL-2B-Instruct",
        "not seen (the search returned Qwen2-VL-2B): all values are from memory of the published config and "
        "transformers' Qwen3-VL defaults; token ids as Qwen3-VL-8B",
    ),
    (
        "Qwen/Qwen3-VL-8B-Instruct",
        "seen: a Qwen3-VL config of the 8B's shape (vocab 151936, hidden 4096, 36 layers, 32 heads, 8 KV heads, "
        "head_dim 128, intermediate 12288, untied, mrope [24, 20, 20] interleaved, image_token_id 151655) and "
        "Ollama's metadata of qwen3-vl:8b (vision 27 blocks, width 1152, 16 heads, deepstack [8, 16, 24], patch "
        "16). vision intermediate 4304: transformers' default",
    ),
)


@dataclass(frozen=True)
class Preset:
    """A pair that shares a tokenizer and works as a demo, and where it runs."""

    key: str
    label: str
    teacher: str
    student: str
    where: str
    dtype: str = "auto"
    lora_rank: int | None = None
    gradient_checkpointing: bool = False


PRESETS: tuple[Preset, ...] = (
    Preset(
        "smolvlm",
        "SmolVLM-500M → SmolVLM-256M",
        "HuggingFaceTB/SmolVLM-500M-Instruct",
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "a CPU with 16 GB of RAM (float32, gradient checkpointing)",
        dtype="float32",
        gradient_checkpointing=True,
    ),
    Preset(
        "qwen2_5_vl",
        "Qwen2.5-VL-7B → Qwen2.5-VL-3B",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "one 48 GB GPU (bfloat16, LoRA, gradient checkpointing)",
        dtype="bfloat16",
        lora_rank=16,
        gradient_checkpointing=True,
    ),
    Preset(
        "qwen3_vl",
        "Qwen3-VL-8B → Qwen3-VL-2B (the paper's pair)",
        "Qwen/Qwen3-VL-8B-Instruct",
        "Qwen/Qwen3-VL-2B-Instruct",
        "GPUs: accelerate launch with an FSDP config (bfloat16, gradient checkpointing)",
        dtype="bfloat16",
        gradient_checkpointing=True,
    ),
)


def config_of(model: str):
    """A transformers config built from a preset model's published values."""
    from transformers import AutoConfig

    values = published_configs()[model]
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)


def preset(key: str) -> Preset:
    return next(p for p in PRESETS if p.key == key)


def preset_configs(key: str):
    """(teacher config, student config) of a preset."""
    chosen = preset(key)
    return config_of(chosen.teacher), config_of(chosen.student)
