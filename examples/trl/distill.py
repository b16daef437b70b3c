"""Distil a VLM with one of vlod's rules inside TRL: `accelerate launch [--config_file ...] examples/trl/distill.py ...`.

Every flag of `vlod_core.trl.DecomposedDistillationConfig` (TRL's `DistillationConfig` plus `--steering`,
`--gamma`, `--lam`, `--eta`, `--ablation`) and of `ScriptArguments` below. `--data` is anything
`python -m vlod_core distill --data` reads (an image folder, TRL / LLaMA-Factory JSONL, a saved data set, a
Parquet file, a Hub id). See the README, "At scale", for the 8-GPU recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import AutoModelForImageTextToText, HfArgumentParser

from vlod_core.data import TrainingData, split_rows
from vlod_core.pair import check_chat_templates, tokenizer_differences
from vlod_core.processors import load_processor
from vlod_core.sources import load_data
from vlod_core.trl import DecomposedDistillationConfig, DecomposedDistillationTrainer


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "the student (folder or Hub id)"})
    data: str = field(metadata={"help": "the training data (path or Hub id), as vlod's --data"})
    dtype: str = field(default="bfloat16", metadata={"help": "weights' dtype: bfloat16, float16 or float32"})


def main() -> None:
    script, config = HfArgumentParser((ScriptArguments, DecomposedDistillationConfig)).parse_args_into_dataclasses()
    if config.teacher_model_name_or_path is None:
        raise SystemExit("--teacher_model_name_or_path is required")
    processor = load_processor(script.model_name_or_path, config.trust_remote_code)
    teacher_processor = load_processor(config.teacher_model_name_or_path, config.trust_remote_code)
    differences = tokenizer_differences(teacher_processor.tokenizer, processor.tokenizer)
    if differences:
        raise SystemExit(f"teacher and student tokenizers differ: {'; '.join(differences[:3])}")
    check_chat_templates(teacher_processor, processor)
    rows = load_data(script.data)
    split = split_rows(rows.rows, seed=config.seed)  # the source's own train/test split, else 20% held out
    print(f"{rows.summary()}; training on {len(split.train)} rows ({split.how})")
    data = TrainingData.from_split(split, rows.name)
    # Loaded after the config exists: under DeepSpeed ZeRO-3, transformers then partitions the weights while loading.
    dtype = getattr(torch, script.dtype)
    kwargs = dict(dtype=dtype, trust_remote_code=config.trust_remote_code, use_safetensors=True)
    student = AutoModelForImageTextToText.from_pretrained(script.model_name_or_path, **kwargs)
    teacher = AutoModelForImageTextToText.from_pretrained(config.teacher_model_name_or_path, **kwargs)
    teacher.eval().requires_grad_(False)
    trainer = DecomposedDistillationTrainer(student, teacher, config, train_dataset=data, processing_class=processor)
    trainer.train()
    trainer.save_model(config.output_dir)


if __name__ == "__main__":
    main()
