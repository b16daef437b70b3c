"""`vlod toy build`: make the embedded teacher/student pair, deterministically from a seed.

Writes `DIR/teacher/`, `DIR/student/` (partly grounded) and `DIR/student_blind/` (text only: the extreme
case for teaching), each a full `save_pretrained` folder with its processor, plus `DIR/card.json` with
held-out accuracies and library versions. The folder appears atomically (built aside, then renamed), and a
file lock keeps two processes from building it at once.

Three stages, as a real VLM is made: the vision tower is pretrained on what each cell holds
(`toy.tower`), then the teacher's language model learns to read it (the tower frozen), and the student, a
smaller language model, borrows that same frozen tower and learns to answer the colour and count questions
from the image; shape and leftmost it answers from the language prior. The student trains in a second
process while the teacher trains (`vlod_core.child`): on two cores the build takes the teacher's time, not the
sum, and the weights are the same as trained one after the other. Each stage trains to a plateau, so
an accuracy is not a snapshot of a steep learning curve that a different CPU's rounding (thread count,
kernel choice) would move by points; that was why two machines once disagreed by 8 points on a student
trained briefly on every question type. The build also runs torch on one thread whatever the machine has:
the summation order (and so the rounding) of a kernel can depend on the thread count, and on a 2-core
machine shared with other processes two threads made a step 4-10x slower than one (threads spinning for a
busy core).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from vlod_core.evaluation import reference_accuracy
from vlod_core.home import vlod_home
from vlod_core.results import library_versions
from vlod_core.toy.models import STUDENT_SIZE, TEACHER_SIZE, build_model, build_processor
from vlod_core.child import Channel
from vlod_core.toy.source import held_out_rows
from vlod_core.toy.stages import BuildFrame, Progress, every, student_inputs
from vlod_core.toy.tower import TowerConfig, pretrain_tower
from vlod_core.toy.train import TrainConfig, train

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyBuildConfig:
    """Step counts are fixed (not time budgets) so a seed gives the same pair on every build on one machine.
    Another CPU's float kernels round differently, and over a thousand steps the pairs drift apart (README)."""

    seed: int = 0
    tower_steps: int = TowerConfig.steps
    teacher_steps: int = 1000
    teacher_lr: float = 2e-3
    # The teacher's questions (colour, shape, count, leftmost): count is learned in a few hundred steps.
    teacher_question_weights: tuple[float, ...] = (0.25, 0.25, 0.1, 0.4)
    student_text_steps: int = 400  # learns the language prior; this snapshot is the blind student
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
    # Train the student in a second process while the teacher trains (the same models; on 2 cores, the
    # build takes the teacher's time instead of the sum).
    parallel: bool = True

    def __post_init__(self):
        for name in (
            "tower_steps",
            "teacher_steps",
            "student_text_steps",
            "student_image_steps",
            "batch",
            "eval_examples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def default_toy_dir() -> Path:
    return vlod_home() / "toy"


def build_toy_pair(
    out: Path | None = None, config: ToyBuildConfig = ToyBuildConfig(), progress: Progress | None = None
) -> dict:
    """Train and save the toy pair into `out` (replacing it); returns the card."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out) if out is not None else default_toy_dir()
    total = config.tower_steps + config.teacher_steps + config.student_text_steps + config.student_image_steps
    processor = build_processor()
    card: dict = {"seed": config.seed, "config": asdict(config), "versions": library_versions()}
    with BuildFrame(out, ".toy-build-", config.threads, total, progress) as frame:
        torch.manual_seed(config.seed)
        teacher = build_model(TEACHER_SIZE, processor)
        tower = TowerConfig(steps=config.tower_steps, seed=config.seed)
        card["tower"] = pretrain_tower(
            teacher.model.vision_tower,
            tower,
            callback=every(25, lambda step: frame.report("training vision tower", step + 1)),
        )
        tower_state = {k: v.detach().clone() for k, v in teacher.model.vision_tower.state_dict().items()}
        if config.parallel:
            frame.start_student("vlod_core.toy.build:train_student_job", config, tower_state)

        def teacher_step(step: int) -> None:
            frame.report("training teacher", config.tower_steps + step + 1 + frame.student_steps)

        teacher_config = TrainConfig(
            steps=config.teacher_steps,
            batch=config.batch,
            lr=config.teacher_lr,
            seed=config.seed,
            question_weights=config.teacher_question_weights,
            varied_fraction=config.varied_fraction,
            train_vision=False,
        )
        train(teacher, processor, teacher_config, callback=every(25, teacher_step))
        frame.report("evaluating teacher", config.tower_steps + config.teacher_steps + frame.student_steps)
        card["teacher"] = _evaluate_and_save(teacher, processor, config, frame.staging / "teacher")
        card |= frame.student_card(
            partial(_train_student, config, tower_state, frame.staging), first=config.tower_steps + config.teacher_steps
        )
        frame.finish(card)
    logger.info("toy pair built in %.1f s at %s", card["build_seconds"], out)
    return card


def _evaluate_and_save(model, processor, config: ToyBuildConfig, folder: Path) -> dict:
    accuracy = reference_accuracy(model, processor, held_out_rows(config.eval_examples), len(processor.tokenizer))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return accuracy.to_dict() | {"parameters": sum(p.numel() for p in model.parameters())}


def train_student_job(payload: dict, channel: Channel) -> dict[str, dict]:
    """`_train_student` in the second process (`BuildFrame.start_student`)."""
    config, tower_state, staging = student_inputs(payload, ToyBuildConfig)
    return _train_student(config, tower_state, staging, channel.step)


def _train_student(
    config: ToyBuildConfig, tower_state: dict, staging: Path, on_step: Callable[[int], None]
) -> dict[str, dict]:
    """The blind and the grounded student, saved into `staging`, from the pretrained tower's weights; the
    same whether it runs beside the teacher (a process of its own) or after it."""
    processor = build_processor()
    torch.manual_seed(config.seed + 1)
    student = build_model(STUDENT_SIZE, processor)
    student.model.vision_tower.load_state_dict(tower_state)
    common = {
        "batch": config.batch,
        "lr": config.student_lr,
        "seed": config.seed + 1,
        "train_vision": False,
        "varied_fraction": config.varied_fraction,
    }
    text_phase = TrainConfig(steps=config.student_text_steps, text_only_fraction=1.0, **common)
    train(student, processor, text_phase, callback=every(25, lambda step: on_step(step + 1)))
    card = {"student_blind": _evaluate_and_save(student, processor, config, staging / "student_blind")}
    image_phase = TrainConfig(
        steps=config.student_image_steps,
        warmup=10,
        question_weights=config.student_question_weights,
        text_question_weights=TrainConfig.question_weights,
        **common | {"seed": config.seed + 2},
    )
    done = config.student_text_steps
    train(student, processor, image_phase, callback=every(25, lambda step: on_step(done + step + 1)))
    card["student"] = _evaluate_and_save(student, processor, config, staging / "student")
    return card


def is_built(root: Path) -> bool:
    return (
        all((root / name / "model.safetensors").is_file() for name in ("teacher", "student"))
        and (root / "card.json").is_file()
    )


def ensure_toy_pair(root: Path | None = None, progress: Progress | None = None, world: str = "default") -> Path:
    """The toy pair's folder, building it first (under a lock) if it is not there yet; `world="reasoning"`:
    the reasoning world's pair (`toy.reasoning_build`, default folder `$VLOD_HOME/toy-reasoning`)."""
    if world == "default":
        default, build, lock_name = default_toy_dir, build_toy_pair, ".toy-build.lock"
    elif world == "reasoning":
        from vlod_core.toy.reasoning_build import build_reasoning_pair, default_reasoning_dir

        default, build, lock_name = default_reasoning_dir, build_reasoning_pair, ".toy-reasoning-build.lock"
    else:
        raise ValueError(f"unknown toy world {world!r}; expected default or reasoning")
    root = Path(root) if root is not None else default()
    if is_built(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not is_built(root):  # another process may have built it while we waited
                build(root, progress=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root
