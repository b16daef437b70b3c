"""Run by tests/test_accelerate.py under `accelerate launch`: distil one fixed batch data-parallel.

`python tests/accelerate_worker.py OUT` loads the pair from $VLOD_HOME (the test session's small pair),
runs `distill` with fixed rollouts for a global batch of 4 (each process takes its share, DDP averages the
gradients) for each rule, the main process saves each trained student as OUT/<rule>.safetensors, and every
process writes its step records to OUT/<rule>.records.<process>.json.
The test imports the same helpers to run the joined batch in a single process.
"""

from __future__ import annotations

import sys
from pathlib import Path

BATCH = 4
STEPS = 2
LR = 1e-2


def rules():
    from vlod_core.steering import SteeringConfig

    # Fixed η: with eta="auto" each process would measure η on its own share (not the joined batch's η).
    return {"standard": SteeringConfig(), "vgs": SteeringConfig(rule="vgs", eta=0.41)}


def parallel_only_rules():
    """Run under `accelerate launch` only: η measured per process and averaged (runs, but is not one process's η)."""
    from vlod_core.steering import SteeringConfig

    return {"vgs_auto": SteeringConfig(rule="vgs", eta="auto")}


def config(rule: str):
    from vlod_core.distill import DistillConfig

    steering = (rules() | parallel_only_rules())[rule]
    return DistillConfig(steps=STEPS, batch=BATCH, lr=LR, eval_examples=1, answer_examples=0, steering=steering)


def fixed_rollouts(pair):
    """The same global batch every step; responses of different lengths so the shares pad differently."""
    from vlod_core.toy import world
    from vlod_core.toy.train import PromptCache

    examples = world.sample_examples(BATCH, seed=3)
    cache = PromptCache(pair.processor)
    responses = [cache.answer(ex.answer)[: 2 + i % 3] for i, ex in enumerate(examples)]
    images, questions = [ex.image() for ex in examples], [ex.question for ex in examples]
    return lambda step: (images, questions, responses)


def state(model) -> dict:
    """CPU copies of every tensor (tied weights become separate copies, which safetensors needs)."""
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def main(out: Path) -> None:
    import json

    from accelerate import PartialState
    from safetensors.torch import save_file

    from vlod_core.distill import distill
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    pair = load_pair(PairSpec(device="cpu"), toy.folders(PairSpec()))
    for rule in rules() | parallel_only_rules():
        # No accelerator passed: distill makes its own, as `accelerate launch -m vlod_core distill` does.
        result = distill(pair, config(rule), rollouts=fixed_rollouts(pair), evaluate_model=False)
        # Each process's records: its own share's losses, and the synchronised gradient's norm.
        (out / f"{rule}.records.{PartialState().process_index}.json").write_text(json.dumps(result.card.records))
        if PartialState().is_main_process:
            save_file(state(result.student), str(out / f"{rule}.safetensors"))
    PartialState().wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
