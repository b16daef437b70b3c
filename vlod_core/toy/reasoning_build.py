"""`vlod toy build --world reasoning`: the reasoning world's teacher/student pair, deterministically from a seed.

The same three stages as the default build (`toy.build`), on the reasoning world's chains (`toy.reasoning`):
the vision tower is pretrained on what each cell holds; the teacher's language model learns to read it and
to write chains in its style (having read the student's style too: a share `style_gap` of its phrasings are
the student's); the student, a smaller language model on the same frozen tower, learns to write chains in
its own style from text alone (the blind student, as an instruct model's language is learned), then to read
the counts and the shapes and colours that are there (`not_colour`, `two_shapes`) from the image. Columns and
"leftmost" it guesses from the language prior: that is the part of the image it misreads and what
distillation has to teach. The student trains in a second process while the teacher trains (`vlod_core.child`).

The card records final-answer accuracies (greedy chains, the `\\boxed{}` answer parsed and compared exactly),
format errors, mean answer length, and the regime at step 0: `geometry`'s norms and angles on the seed-0
batch, and where the teacher's visual dependency (VDS) sits in the student's chains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vlod_core.answers import final_answer
from vlod_core.data import binomial_stderr
from vlod_core.results import library_versions
from vlod_core.sampling import SamplingConfig, decode, generate
from vlod_core.toy import reasoning
from vlod_core.home import vlod_home
from vlod_core.toy.models import STUDENT_SIZE, TEACHER_SIZE, build_model
from vlod_core.child import Channel
from vlod_core.toy.stages import BuildFrame, Progress, every, student_inputs
from vlod_core.toy.tower import TowerConfig, pretrain_tower
from vlod_core.toy.train import TrainConfig, train

logger = logging.getLogger(__name__)

WORLD = "reasoning"


@dataclass(frozen=True)
class ReasoningBuildConfig:
    """Step counts are fixed (not time budgets) so a seed gives the same pair on every build on one machine.
    Another CPU's float kernels round differently, and over a thousand steps the pairs drift apart (README)."""

    seed: int = 0
    tower_steps: int = TowerConfig.steps
    teacher_steps: int = 1500
    teacher_lr: float = 2e-3
    # The teacher's kinds (not_colour, two_shapes, leftmost_colour, left_of).
    teacher_question_weights: tuple[float, ...] = (0.25, 0.25, 0.15, 0.35)
    style_gap: float = reasoning.STYLE_GAP
    student_text_steps: int = 500  # its own style from text alone; this snapshot is the blind student
    student_image_steps: int = 600  # counts and presence from the image, with the borrowed tower frozen
    student_lr: float = 2e-3
    # What the student's image phase asks: grounded on not_colour and two_shapes only.
    student_question_weights: tuple[float, ...] = (0.48, 0.48, 0.02, 0.02)
    batch: int = 32
    eval_examples: int = 400
    geometry_batch: int = 32
    varied_fraction: float = TrainConfig.varied_fraction
    threads: int = 1
    parallel: bool = True

    def __post_init__(self):
        for name in ("tower_steps", "teacher_steps", "student_text_steps", "student_image_steps", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        reasoning.teacher_split(self.style_gap)  # checks its range

    def teacher_training(self) -> TrainConfig:
        """The teacher stage's training settings, on the borrowed tower kept frozen."""
        return TrainConfig(
            steps=self.teacher_steps,
            batch=self.batch,
            lr=self.teacher_lr,
            seed=self.seed,
            question_weights=self.teacher_question_weights,
            varied_fraction=self.varied_fraction,
            train_vision=False,
        )

    def teacher_sample(self) -> Callable[..., list]:
        """The teacher stage's examples: chains in the teacher's style, a share `style_gap` in the student's."""
        return partial(reasoning.sample_examples, style="teacher", gap=self.style_gap)


def default_reasoning_dir() -> Path:
    return vlod_home() / "toy-reasoning"


def build_reasoning_pair(
    out: Path | None = None, config: ReasoningBuildConfig = ReasoningBuildConfig(), progress: Progress | None = None
) -> dict:
    """Train and save the reasoning pair into `out` (replacing it); returns the card."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out) if out is not None else default_reasoning_dir()
    total = config.tower_steps + config.teacher_steps + config.student_text_steps + config.student_image_steps
    processor = reasoning.build_reasoning_processor()
    card: dict = {"world": WORLD, "seed": config.seed, "config": asdict(config), "versions": library_versions()}
    with BuildFrame(out, ".toy-reasoning-build-", config.threads, total, progress) as frame:
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
            frame.start_student("vlod_core.toy.reasoning_build:train_student_job", config, tower_state)
        step_report = every(
            25, lambda step: frame.report("training teacher", config.tower_steps + step + 1 + frame.student_steps)
        )
        train(teacher, processor, config.teacher_training(), callback=step_report, sample=config.teacher_sample())
        _save(teacher, processor, frame.staging / "teacher")
        card |= frame.student_card(
            partial(_train_student, config, tower_state, frame.staging), first=config.tower_steps + config.teacher_steps
        )
        frame.report("evaluating", total)
        card |= measure(frame.staging, config)
        frame.finish(card)
    logger.info("reasoning pair built in %.1f s at %s", card["build_seconds"], out)
    return card


def _save(model, processor, folder: Path) -> None:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def train_student_job(payload: dict, channel: Channel) -> dict:
    """`_train_student` in the second process (`BuildFrame.start_student`)."""
    config, tower_state, staging = student_inputs(payload, ReasoningBuildConfig)
    return _train_student(config, tower_state, staging, channel.step)


def _train_student(
    config: ReasoningBuildConfig, tower_state: dict, staging: Path, on_step: Callable[[int], None]
) -> dict[str, dict]:
    """The blind and the grounded student in the student's style, saved into `staging`, with their card
    entries (measured here: in the second process, while the teacher still trains)."""
    processor = reasoning.build_reasoning_processor()
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
    sample = partial(reasoning.sample_examples, style="student")
    text_phase = TrainConfig(steps=config.student_text_steps, text_only_fraction=1.0, **common)
    train(student, processor, text_phase, callback=every(25, lambda step: on_step(step + 1)), sample=sample)
    _save(student, processor, staging / "student_blind")
    examples = held_out_examples(config.eval_examples)
    card = {"student_blind": _model_card(student, processor, examples)}
    image_phase = TrainConfig(
        steps=config.student_image_steps,
        warmup=10,
        question_weights=config.student_question_weights,
        text_question_weights=(0.25, 0.25, 0.25, 0.25),
        **common | {"seed": config.seed + 2},
    )
    done = config.student_text_steps
    train(student, processor, image_phase, callback=every(25, lambda step: on_step(done + step + 1)), sample=sample)
    _save(student, processor, staging / "student")
    return card | {"student": _model_card(student, processor, examples)}


def _model_card(model, processor, examples: list) -> dict:
    return chain_accuracy(model, processor, examples) | {"parameters": sum(p.numel() for p in model.parameters())}


# ---------------------------------------------------------------------------------------------- measuring


def held_out_examples(n: int) -> list:
    from vlod_core.toy.source import HELD_OUT_SEED

    return reasoning.sample_examples(n, seed=HELD_OUT_SEED, reference=True)


@torch.no_grad()
def chain_answers(model, processor, examples: list, with_image: bool, batch: int = 200) -> list[str]:
    """Greedy chains of `model` for `examples` (the clean renderer's images, or none)."""
    config = SamplingConfig(greedy=True, max_new_tokens=reasoning.MAX_NEW_TOKENS)
    out = []
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        images = [ex.image() if with_image else None for ex in chunk]
        ids = generate(model, processor, [ex.question for ex in chunk], images, config)
        out += [decode(processor.tokenizer, row) for row in ids]
    return out


def chain_accuracy(model, processor, examples: list) -> dict:
    """Final-answer accuracy (with standard error), format errors and mean length of `model`'s greedy chains,
    with the image and without it, overall and per kind."""
    out: dict = {}
    for suffix, with_image in (("image", True), ("no_image", False)):
        chains = chain_answers(model, processor, examples, with_image)
        got = [final_answer(c, "boxed") for c in chains]
        wanted = [final_answer(ex.answer, "boxed") for ex in examples]
        right = [g == w for g, w in zip(got, wanted)]
        value = float(np.mean(right))
        out[f"accuracy_{suffix}"] = round(value, 4)
        out[f"accuracy_{suffix}_stderr"] = round(binomial_stderr(value, len(right)), 4)
        out[f"format_errors_{suffix}"] = int(sum(g is None for g in got))
        out[f"mean_answer_tokens_{suffix}"] = round(
            float(np.mean([len(processor.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chains])), 1
        )
        out[f"accuracy_{suffix}_per_kind"] = {
            kind: round(float(np.mean([r for r, ex in zip(right, examples) if ex.question_type == kind])), 4)
            for kind in reasoning.KINDS
        }
    return out


def measure(root: Path, config: ReasoningBuildConfig) -> dict:
    """What the card says about the built pair in `root` besides the students' accuracies: the teacher's,
    the answer length, the question-only prior, the regime."""
    from vlod_core.pair import PairSpec, load_pair

    examples = held_out_examples(config.eval_examples)
    model, processor = _load(root / "teacher")
    card: dict = {"teacher": _model_card(model, processor, examples)}
    reference = reasoning.sample_examples(5000, seed=config.seed + 99, reference=True)
    card["prior_accuracy"] = round(reasoning.prior_accuracy(examples, reference), 4)
    tokenizer = reasoning.build_reasoning_tokenizer()
    card["mean_answer_tokens"] = round(
        float(np.mean([len(tokenizer(ex.answer, add_special_tokens=False)["input_ids"]) for ex in examples])), 1
    )
    card["max_new_tokens"] = reasoning.MAX_NEW_TOKENS
    card["answer_pattern"] = "boxed"
    pair = load_pair(
        PairSpec(teacher=str(root / "teacher"), student=str(root / "student"), device="cpu", dtype="float32")
    )
    card["regime"] = regime(pair, batch=config.geometry_batch, seed=0)
    return card


def _load(folder: Path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    return model, AutoProcessor.from_pretrained(folder)


def regime(pair, batch: int = 32, seed: int = 0) -> dict:
    """The step-0 geometry `vlod geometry --world reasoning` measures (same rows, seed and sampling), and
    where the teacher's visual dependency sits in the student's chains."""
    from vlod_core.geometry_batch import batch_geometry
    from vlod_core.toy.source import ToyPrompts

    rows = ToyPrompts(WORLD).prompts(0, batch, seed)
    images, questions = [r.load_image() for r in rows], [r.question for r in rows]
    sampling = SamplingConfig(max_new_tokens=reasoning.MAX_NEW_TOKENS)
    geometry = batch_geometry(pair, images, questions, seed=seed, sampling=sampling, bins=10)
    g = geometry.global_
    norms, angles = g["norms"], g["angles"]
    out = {"norms": norms, "angles": angles}
    out["lang_vis_ratio"] = norms["lang"] / norms["vis"] if norms["vis"] > 0 else float("nan")
    out |= vds_concentration(pair, images, questions, seed, sampling)
    return out


@torch.no_grad()
def vds_concentration(pair, images, questions, seed: int, sampling: SamplingConfig) -> dict:
    """On the student's sampled chains: the share of all VDS held by the top decile of tokens, and the share of
    response tokens whose VDS exceeds 0.1 nats (the image-read minority)."""
    from vlod_core.engine import rollout
    from vlod_core.losses import token_kls

    scored = rollout(pair, images, questions, sampling=sampling, seed=seed)
    vds = token_kls(scored.four)["vds"]
    mask = scored.four.response_mask.bool()
    values = vds[mask].float().sort(descending=True).values
    top = max(1, len(values) // 10)
    return {
        "response_tokens": int(mask.sum()),
        "vds_top_decile_share": round(float(values[:top].sum() / values.sum().clamp(min=1e-12)), 4),
        "tokens_vds_over_0.1": round(float((values > 0.1).float().mean()), 4),
    }
