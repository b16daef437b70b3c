"""`vlod toy build`: make the embedded teacher/student pair, deterministically from a seed.

Writes `DIR/teacher/`, `DIR/student/` (partly grounded) and `DIR/student_blind/` (text only: the extreme
case for teaching), each a full `save_pretrained` folder with its processor, plus `DIR/card.json` with
held-out accuracies and library versions. The folder appears atomically (built aside, then renamed), and a
file lock keeps two processes from building it at once.

The student starts from a copy of the teacher's trained vision tower and learns, with that tower frozen, to
answer the colour and count questions from the image; shape and leftmost it answers from the language
prior. Both parts are trained to a plateau, so its accuracy is not a snapshot of a steep learning curve
that a different CPU's rounding (thread count, kernel choice) would move by points; that was why two
machines once disagreed by 8 points on a student trained briefly on every question type. The build also
runs torch on one thread whatever the machine has: the summation order (and so the rounding) of a kernel
can depend on the thread count, and on a 2-core machine shared with other processes two threads made a
step 4-10x slower than one (threads spinning for a busy core).
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

from vlod_core.evaluation import reference_accuracy
from vlod_core.results import library_versions
from vlod_core.toy.models import STUDENT_SIZE, TEACHER_SIZE, build_model, build_processor
from vlod_core.toy.source import held_out_rows
from vlod_core.toy.train import TrainConfig, train

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]  # (stage, fraction of the whole build done)


@dataclass(frozen=True)
class ToyBuildConfig:
    """Step counts are fixed (not time budgets) so a seed gives the same pair on any machine."""

    seed: int = 0
    teacher_steps: int = 3000
    teacher_lr: float = 1e-3
    student_text_steps: int = 800  # learns the language prior; this snapshot is the blind student
    student_image_steps: int = 600  # colour and count from the image, with the borrowed tower frozen
    student_lr: float = 2e-3
    # What the student's image phase asks (colour, shape, count, leftmost): grounded on colour and count only.
    student_question_weights: tuple[float, ...] = (0.48, 0.02, 0.48, 0.02)
    batch: int = 32
    eval_examples: int = 1000
    # Share of varied drawings after the clean start (`TrainConfig.varied_fraction`); 0 trains on the clean
    # renderer only, which grounds in far fewer steps (the tests' small pair).
    varied_fraction: float = TrainConfig.varied_fraction
    threads: int = 1  # torch's intra-op threads during the build, whatever the machine has

    def __post_init__(self):
        for name in ("teacher_steps", "student_text_steps", "student_image_steps", "batch", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def vlod_home() -> Path:
    return Path(os.environ.get("VLOD_HOME", "~/.cache/vlod")).expanduser()


def default_toy_dir() -> Path:
    return vlod_home() / "toy"


def build_toy_pair(
    out: Path | None = None, config: ToyBuildConfig = ToyBuildConfig(), progress: Progress | None = None
) -> dict:
    """Train and save the toy pair into `out` (replacing it); returns the card."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out) if out is not None else default_toy_dir()
    started, cpu_started = time.perf_counter(), time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    total = config.teacher_steps + config.student_text_steps + config.student_image_steps
    done = 0

    def run(name: str, model, processor, train_config: TrainConfig) -> None:
        nonlocal done

        def report(step: int, _loss: float) -> None:
            if progress is not None and (step % 25 == 0 or step == train_config.steps - 1):
                progress(f"training {name}", (done + step + 1) / total)

        train(model, processor, train_config, callback=report)
        done += train_config.steps

    processor = build_processor()
    card: dict = {"seed": config.seed, "config": asdict(config), "versions": library_versions()}

    def finish(name: str, model) -> None:
        if progress is not None:
            progress(f"evaluating {name}", done / total)
        accuracy = reference_accuracy(model, processor, held_out_rows(config.eval_examples), len(processor.tokenizer))
        card[name] = accuracy.to_dict() | {"parameters": sum(p.numel() for p in model.parameters())}
        model.save_pretrained(staging / name)
        processor.save_pretrained(staging / name)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".toy-build-", dir=out.parent))
    try:
        torch.manual_seed(config.seed)
        teacher = build_model(TEACHER_SIZE, processor)
        teacher_config = TrainConfig(
            steps=config.teacher_steps,
            batch=config.batch,
            lr=config.teacher_lr,
            seed=config.seed,
            varied_fraction=config.varied_fraction,
        )
        run("teacher", teacher, processor, teacher_config)
        finish("teacher", teacher)

        torch.manual_seed(config.seed + 1)
        student = build_model(STUDENT_SIZE, processor)
        student.model.vision_tower.load_state_dict(teacher.model.vision_tower.state_dict())
        common = dict(
            batch=config.batch,
            lr=config.student_lr,
            seed=config.seed + 1,
            train_vision=False,
            varied_fraction=config.varied_fraction,
        )
        run(
            "student (text only)",
            student,
            processor,
            TrainConfig(steps=config.student_text_steps, text_only_fraction=1.0, **common),
        )
        finish("student_blind", student)
        image_phase = TrainConfig(
            steps=config.student_image_steps,
            warmup=10,
            question_weights=config.student_question_weights,
            text_question_weights=TrainConfig.question_weights,
            **common | {"seed": config.seed + 2},
        )
        run("student (with images)", student, processor, image_phase)
        finish("student", student)

        card["build_seconds"] = round(time.perf_counter() - started, 1)
        card["build_cpu_seconds"] = round(time.process_time() - cpu_started, 1)  # wall time varies with load
        (staging / "card.json").write_text(json.dumps(card, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        torch.set_num_threads(threads)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("toy pair built in %.1f s at %s", card["build_seconds"], out)
    return card


def is_built(root: Path) -> bool:
    return (
        all((root / name / "model.safetensors").is_file() for name in ("teacher", "student"))
        and (root / "card.json").is_file()
    )


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
