"""Run by tests/test_trl.py under `accelerate launch`: `DecomposedDistillationTrainer` data-parallel on the CPU.

`python tests/trl_worker.py OUT` loads the pair from $VLOD_HOME (the test session's small pair), trains the
student `STEPS` steps with `vgs` (η measured every step and averaged over the processes) from a TRL-format data
set, and every process writes OUT/log.<process>.json (TRL's log history: loss and the decomposition) and
OUT/student.<process>.safetensors (its copy of the student after training; DDP must keep the copies equal).
"""

from __future__ import annotations

import sys
from pathlib import Path

STEPS = 2
PER_DEVICE_BATCH = 2
ROWS = 8


def trl_records(rows: int, seed: int = 5) -> list[dict]:
    """Toy scenes as TRL users have them: `prompt` one user message with an image placeholder, `images`."""
    from vlod_core.toy import world

    return [
        {
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ex.question}]}],
            "images": [ex.image()],
        }
        for ex in world.sample_examples(rows, seed=seed)
    ]


def config(out: Path, rule: str, **overrides):
    from vlod_core.trl import DecomposedDistillationConfig

    values = dict(
        output_dir=str(out),
        steering=rule,
        per_device_train_batch_size=PER_DEVICE_BATCH,
        max_steps=STEPS,
        learning_rate=1e-3,
        max_completion_length=6,
        logging_steps=1,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    return DecomposedDistillationConfig(**(values | overrides))


def main(out: Path) -> None:
    import copy
    import json

    from datasets import Dataset
    from safetensors.torch import save_file

    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair
    from vlod_core.trl import DecomposedDistillationTrainer

    pair = load_pair(PairSpec(device="cpu"), toy.folders(PairSpec()))
    trainer = DecomposedDistillationTrainer(
        copy.deepcopy(pair.student),
        pair.teacher,
        config(out / "run", "vgs"),
        train_dataset=Dataset.from_list(trl_records(ROWS)),
        processing_class=pair.processor,
    )
    trainer.train()
    process = trainer.accelerator.process_index
    (out / f"log.{process}.json").write_text(json.dumps(trainer.state.log_history))
    student = trainer.accelerator.unwrap_model(trainer.model)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in student.state_dict().items()}
    save_file(state, str(out / f"student.{process}.safetensors"))
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
