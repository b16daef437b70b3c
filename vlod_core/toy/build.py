"""`vlod toy build`: make the embedded teacher/student pair, deterministically from a seed.

Writes `DIR/teacher/`, `DIR/student/` (partly grounded: it has seen images, briefly) and
`DIR/student_blind/` (text only: the extreme case for teaching), each a full `save_pretrained` folder with
its processor, plus `DIR/card.json` with held-out accuracies and library versions. The folder appears
atomically (built aside, then renamed), and a file lock keeps two processes from building it at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vlod_core.evaluation import evaluate
from vlod_core.toy.models import STUDENT_SIZE, TEACHER_SIZE, build_model, build_processor
from vlod_core.toy.train import TrainConfig, train

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]  # (stage, fraction of the whole build done)


@dataclass(frozen=True)
class ToyBuildConfig:
    seed: int = 0
    teacher_steps: int = 3000
    student_steps: int = 500
    blind_steps: int = 400
    batch: int = 32
    lr: float = 2e-3
    eval_examples: int = 1000

    def __post_init__(self):
        for name in ("teacher_steps", "student_steps", "blind_steps", "batch", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def vlod_home() -> Path:
    return Path(os.environ.get("VLOD_HOME", "~/.cache/vlod")).expanduser()


def default_toy_dir() -> Path:
    return vlod_home() / "toy"


def library_versions() -> dict[str, str]:
    import accelerate
    import tokenizers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "accelerate": accelerate.__version__,
    }


def build_toy_pair(out: Path | None = None, config: ToyBuildConfig = ToyBuildConfig(), progress: Progress | None = None) -> dict:
    """Train and save the toy pair into `out` (replacing it); returns the card."""
    out = Path(out) if out is not None else default_toy_dir()
    started = time.perf_counter()
    total = config.teacher_steps + config.student_steps + config.blind_steps
    done = 0

    def stage(name: str, steps: int) -> Callable[[int, float], None]:
        def report(step: int, _loss: float) -> None:
            if progress is not None and (step % 25 == 0 or step == steps - 1):
                progress(name, (done + step + 1) / total)

        return report

    processor = build_processor()
    card: dict = {"seed": config.seed, "config": asdict(config), "versions": library_versions()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".toy-build-", dir=out.parent))
    try:
        plan = [
            ("teacher", TEACHER_SIZE, config.teacher_steps, 0.15),
            ("student", STUDENT_SIZE, config.student_steps, 0.15),
            ("student_blind", STUDENT_SIZE, config.blind_steps, 1.0),
        ]
        for index, (name, size, steps, text_only) in enumerate(plan):
            torch.manual_seed(config.seed * 1000 + index)
            model = build_model(size, processor)
            train_config = TrainConfig(
                steps=steps, batch=config.batch, lr=config.lr, text_only_fraction=text_only, seed=config.seed * 1000 + index
            )
            train(model, processor, train_config, callback=stage(f"training {name}", steps))
            done += steps
            if progress is not None:
                progress(f"evaluating {name}", done / total)
            accuracy = evaluate(model, processor, len(processor.tokenizer), _held_out(config.eval_examples))
            card[name] = accuracy.to_dict() | {"parameters": sum(p.numel() for p in model.parameters())}
            model.save_pretrained(staging / name)
            processor.save_pretrained(staging / name)
        card["build_seconds"] = round(time.perf_counter() - started, 1)
        (staging / "card.json").write_text(json.dumps(card, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("toy pair built in %.1f s at %s", card["build_seconds"], out)
    return card


def _held_out(n: int):
    from vlod_core.evaluation import held_out_examples

    return held_out_examples(n)


def is_built(root: Path) -> bool:
    return all((root / name / "model.safetensors").is_file() for name in ("teacher", "student")) and (
        root / "card.json"
    ).is_file()


def ensure_toy_pair(root: Path | None = None, progress: Progress | None = None) -> Path:
    """The toy pair's folder, building it first (under a lock) if it is not there yet."""
    root = Path(root) if root is not None else default_toy_dir()
    if is_built(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".toy-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not is_built(root):  # another process may have built it while we waited
                build_toy_pair(root, progress=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root
