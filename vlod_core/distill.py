"""The on-policy distillation loop: sample, score four ways, build the rule's loss, step AdamW.

The loop is handed its data (`vlod_core.data.TrainingData`: the toy world, a user's image folder, a Hub data
set, rows typed into the app) and never knows which. It trains a private copy of the student (the caller's
model, perhaps cached and shared by other sessions, is never touched) and returns it with a run card. An
`accelerate.Accelerator` owns device placement, mixed precision and gradient synchronisation, so
`accelerate launch --num_processes N -m vlod_core distill ...` runs the same code data-parallel: every
process draws the same global batch of prompts, answers and scores its share, DDP averages the gradients.
η measured from gradients ("auto") is averaged across processes.

Toy defaults: 600 steps at lr 1e-3 with AdamW (the paper's 1e-6 is for pretrained billion-parameter
students; a 0.2 M-parameter toy student barely moves at that rate; over 600 steps 1e-3 gained +13 and +15
points on two seeds), batch 32, gradient clipping at 1.0: under a minute on one core.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image

from vlod_core import eta_sample
from vlod_core.answers import compile_pattern
from vlod_core.data import Row, TrainingData
from vlod_core.engine import rollout, score_responses
from vlod_core.evaluation import MAX_SAMPLES, EvalSet, Evaluation, evaluate, greedy_answers
from vlod_core.geometry import geometry_of_losses
from vlod_core.grounding import GroundingReport, check_pair
from vlod_core.grounding import require_grounded_teacher as require_grounded
from vlod_core.inputs import CONTEXTS, ablation_setting
from vlod_core.losses import per_token_losses
from vlod_core.pair import ModelPair
from vlod_core.results import RunCard, StepRecord, library_versions
from vlod_core.sampling import SamplingConfig
from vlod_core.settings import check, setting
from vlod_core.steering import SteeringConfig, measured_eta, objective, steered_gradients


# (images, questions, response ids) of the whole batch for one step; tests pass fixed ones.
Rollouts = Callable[[int], tuple[list[Image.Image], list[str], list[list[int]]]]


def _optional_text(text: str) -> str | None:
    """A flag's or a form's text; empty is no value."""
    return text or None


@dataclass(frozen=True)
class DistillConfig:
    steps: int = setting(600, low=1, high=100_000, step=10, help="optimiser steps", label="Steps")
    batch: int = setting(32, low=1, high=4096, step=8, help="answers per step", label="Batch (answers per step)")
    lr: float = setting(
        1e-3,
        words="learning rate",
        low=1e-7,
        high=1.0,
        step=1e-4,
        fmt="%.0e",
        label="Learning rate (AdamW)",
        help="AdamW learning rate: the toy student needs ~1e-3; the paper used 1e-6 on billion-parameter students",
    )
    weight_decay: float = setting(0.01, low=0.0, high=10.0, help="AdamW weight decay")
    max_grad_norm: float = setting(1.0, low=0.0, high=1e6, help="clip the gradient's norm to this (0: off)")
    seed: int = setting(
        0,
        low=0,
        high=2**31 - 1,
        step=1,
        label="Seed",
        help="every rule starts from this seed: same questions, same sampling, same start",
    )
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=6))
    ablation: str = ablation_setting()
    geometry_every: int = setting(
        0,
        low=0,
        high=100_000,
        step=10,
        label="Angles every k steps (0: never; costs 3+ backward passes)",
        help="record the gradient angles every k steps (0: never; three extra backward passes each time)",
    )
    geometry_bins: int = setting(10, low=0, high=100, help="VDS bins of the recorded angles")
    eval_every: int = setting(
        0,
        low=0,
        high=100_000,
        step=10,
        label="Held-out accuracy every k steps (0: before/after only)",
        help="evaluate every k steps (0: only before and after)",
    )
    eval_examples: int = setting(400, low=1, high=1_000_000, help="at most this many evaluation rows")
    answer_examples: int = setting(6, low=0, high=1000, help="greedy answers kept before and after on this many rows")
    eval_max_new_tokens: int = setting(
        32, low=1, high=4096, help="bound on the teacher's greedy answers that agreement is measured against"
    )
    samples_per_prompt: int = setting(
        1, low=1, high=4096, help="student answers per prompt in a step (TRL's num_generations); divides the batch"
    )
    # Reasoning answers (`vlod_core.answers`): accuracy on the final answer the pattern reads, and Acc@k.
    answer_pattern: str | None = setting(
        None,
        parse=_optional_text,  # checked in __post_init__, where the regex's own error can be said
        label="Final answer pattern ('boxed' or a regex; empty: the whole answer)",
        help="score the final answer this regex reads (its first group, last match), or 'boxed' for \\boxed{...}; "
        "a response it does not find counts wrong and as a format error (default: the whole answer)",
    )
    eval_samples: int = setting(
        0,
        low=0,
        high=MAX_SAMPLES,
        flag="--samples-k",
        label="Acc@k: samples per evaluation row (0: off)",
        help="also report Acc@k: the mean accuracy of k answers per row sampled at temperature 1 (0: off; costs k "
        "generations per row per evaluation)",
    )
    # `standard` descends ℓStd, which needs only the image passes; the image-free ones only feed the logged ℓLang,
    # ℓVis and VDS, so they run every k-th step (NaN in the records between). 1: every step.
    decompose_every: int = setting(
        10,
        low=1,
        high=100_000,
        help="standard only: score the image-free passes (for the logged ℓLang, ℓVis, VDS) every k steps",
    )
    mixed_precision: str = setting("no", choices=("no", "bf16", "fp16"), help="accelerate's mixed precision")
    lora_rank: int = setting(
        0,
        low=0,
        high=1024,
        step=4,
        flag="--lora",
        label="LoRA rank (0: train every weight)",
        help="train LoRA adapters of this rank only (0: every weight): far less memory on a big student",
    )
    gradient_checkpointing: bool = setting(
        False, help="recompute activations in the backward pass: less memory, more time"
    )

    def __post_init__(self):
        check(self)
        if self.answer_pattern is not None and not isinstance(self.answer_pattern, str):
            raise ValueError(f"answer_pattern must be text ('boxed' or a regex) or None, got {self.answer_pattern!r}")
        compile_pattern(self.answer_pattern)  # a bad regex: ValueError, one line
        if self.batch % self.samples_per_prompt:
            raise ValueError(
                f"samples_per_prompt must be >= 1 and divide the batch ({self.batch}), got {self.samples_per_prompt}"
            )

    def needs_ablated(self, step: int) -> bool:
        """Whether step `step` (0-based) must score the image-free context too."""
        steering = self.steering
        if steering.steers or steering.estimator != "full" or step % self.decompose_every == 0:
            return True
        return bool(self.geometry_every) and (step + 1) % self.geometry_every == 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DistillResult:
    student: torch.nn.Module  # the trained copy
    card: RunCard


HALF = (torch.bfloat16, torch.float16)


def _compute_precision(pair: ModelPair, config: DistillConfig):
    """A context for the student's passes: autocast to the pair's half dtype when the private copy holds float32
    master weights (`private_student`) and accelerate's own mixed precision is off.

    Not accelerate's `mixed_precision`: its state is one per process and refuses a second value, so two runs
    of different pairs in one process (the tests, a notebook) could not both train."""
    dtype = next(pair.student.parameters()).dtype
    if dtype in HALF and config.mixed_precision == "no":
        return lambda: torch.autocast(pair.device.type, dtype=dtype)
    return contextlib.nullcontext


def private_student(pair: ModelPair, config: DistillConfig):
    """The session's trainable student: a full copy, or LoRA adapters over the shared weights.

    A full copy of a bf16/fp16 student trains float32 master weights (under autocast in the pair's dtype):
    AdamW steps of 1e-6 on a bf16 weight of 0.02 round away to nothing. LoRA adapters are float32 already.
    """
    from vlod_core.lora import enable_gradient_checkpointing, lora_student

    if config.lora_rank:
        student = lora_student(pair.student, config.lora_rank)
    else:
        student = copy.deepcopy(pair.student)
        if next(student.parameters()).dtype in HALF:
            student = student.float()
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(student)
    return student


def step_seed(seed: int, step: int, process: int = 0) -> int:
    return (seed * 1_000_003 + step * 7919 + process * 104_729) % (2**31)


def data_rollouts(data: TrainingData, config: DistillConfig, process: int, processes: int) -> Rollouts:
    """On-policy: the step's global batch of prompts (the same on every process), this process's share
    answered by the current student; each prompt repeated `samples_per_prompt` times."""
    share = config.batch // processes

    def rollouts(step: int):
        prompts = data.train.prompts(step, config.batch // config.samples_per_prompt, config.seed)
        rows = [row for row in prompts for _ in range(config.samples_per_prompt)][
            process * share : (process + 1) * share
        ]
        return [row.load_image() for row in rows], [row.question for row in rows], None

    return rollouts


def _global_vds(accelerator, vds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Every process's real-token VDS values: the VDS quantiles are over the global batch, as in one process."""
    local = vds.detach()[mask.bool()].float()
    gathered = accelerator.gather(accelerator.pad_across_processes(local, dim=0, pad_index=float("nan")))
    return gathered[~torch.isnan(gathered)]


class RunEvaluator:
    """What a run measures of its student before, during and after training: the held-out metrics (on the main
    process only) and the greedy answers on the rows shown and the probes, each beside the teacher's.

    Built once before the first step: the evaluation set (cached on the data, so several runs on one data set
    share the teacher's answers) and the teacher's answers are set up here, not inside the loop.
    """

    def __init__(
        self, pair: ModelPair, config: DistillConfig, data, probes: list[Row], main: bool, compute, metrics: bool
    ):
        self.pair, self.ablation, self.compute = pair, config.ablation, compute
        self.eval_set = None
        if data is not None and main and metrics:
            key = (config.eval_examples, config.ablation, config.eval_max_new_tokens)
            key += (config.answer_pattern, config.eval_samples)
            if key not in data.eval_sets:
                rows = data.eval_rows[: config.eval_examples]
                data.eval_sets[key] = EvalSet(
                    rows,
                    data.seen_in_training,
                    config.ablation,
                    config.eval_max_new_tokens,
                    answer_pattern=config.answer_pattern,
                    samples=config.eval_samples,
                )
            self.eval_set = data.eval_sets[key]
        self.show = data.show_rows[: config.answer_examples] if data is not None and main else []
        self.probes = probes if main else []
        self.teacher_show = self._greedy(pair.teacher, self.show)
        self.teacher_probes = self._greedy(pair.teacher, self.probes)

    def _greedy(self, model, rows: list[Row]) -> list[dict]:
        return greedy_answers(self.pair, model, rows, self.ablation) if rows else []

    def metrics(self, student) -> Evaluation | None:
        if self.eval_set is None:
            return None
        with self.compute():
            return evaluate(self.pair, self.eval_set, student, check_grounding=False)

    def metrics_before(self, student, config: DistillConfig) -> Evaluation | None:
        """`metrics` of the run's private student before its first step. Every run of one pair copies the shared
        student the same way (`private_student`; LoRA adds adapters that change nothing yet), so the runs of one
        process on one evaluation set (a paper check's worker, `compare`) measure it once."""
        if self.eval_set is None:
            return None
        key = (id(self.pair.student), config.lora_rank, config.mixed_precision)
        shared, evaluation = self.eval_set.initial.get(key, (None, None))
        if shared is not self.pair.student:
            evaluation = self.metrics(student)
            self.eval_set.initial[key] = (self.pair.student, evaluation)
        return evaluation

    def answers(self, student) -> tuple[list[dict], list[dict]]:
        """Greedy answers of `student` on the shown rows and on the probes, each beside the teacher's."""
        with self.compute():
            return (
                _beside(greedy_answers(self.pair, student, self.show, self.ablation), self.teacher_show),
                _beside(greedy_answers(self.pair, student, self.probes, self.ablation), self.teacher_probes),
            )


def data_grounding(pair: ModelPair, data: TrainingData) -> GroundingReport:
    """Both models' grounding on a few evaluation rows, once per pair and data (compare's runs share it)."""
    key = ("grounding", id(pair.teacher), id(pair.student))
    if key not in data.eval_sets:
        data.eval_sets[key] = check_pair(pair, data.eval_rows or data.train.prompts(0, 8, 0))
    return data.eval_sets[key]


def _beside(answers: list[dict], teacher: list[dict]) -> list[dict]:
    return [a | {"teacher_image": t["image"], "teacher_no_image": t["no_image"]} for a, t in zip(answers, teacher)]


@dataclass
class Trainee:
    """The private student as the loop holds it: wrapped for accelerate, its plain module and its parameters."""

    wrapped: torch.nn.Module  # what scores and steps (a DDP wrapper when data-parallel)
    plain: torch.nn.Module  # what samples, evaluates and is returned
    optimiser: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    named_params: list[tuple[str, torch.nn.Parameter]]


def prepare_student(pair: ModelPair, config: DistillConfig, accelerator) -> Trainee:
    """A private copy (or LoRA adapters) of the student with its AdamW, prepared by `accelerator`."""
    student = private_student(pair, config).to(accelerator.device)
    student.train()
    trainable = [p for p in student.parameters() if p.requires_grad]
    # One fused kernel per step instead of a loop over parameters (CPU and CUDA, floating-point weights).
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in trainable)
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    wrapped, optimiser = accelerator.prepare(student, optimiser)
    plain = accelerator.unwrap_model(wrapped)
    named = [(n, p) for n, p in plain.named_parameters() if p.requires_grad]
    return Trainee(wrapped, plain, optimiser, [p for _, p in named], named)


def score_step(
    pair: ModelPair,
    trainee: Trainee,
    config: DistillConfig,
    accelerator,
    images,
    questions,
    responses,
    step: int,
    anchor=None,
):
    """On-policy: this process's share answered by the student (unless `responses` are given), scored four ways
    (the image-free passes only on the steps that need them), and the rule's objective built from the per-token
    losses. Returns the scored rollout and the objective's terms."""
    processes, process = accelerator.num_processes, accelerator.process_index
    scored = rollout(
        pair,
        images,
        questions,
        responses=responses,
        sampling=config.sampling,
        seed=step_seed(config.seed, step, process),
        ablation=config.ablation,
        contexts=CONTEXTS if config.needs_ablated(step) else ("image",),
        student=trainee.wrapped,
        sampler=trainee.plain,
        student_grad=True,
        anchor=anchor,
        merge=processes > 1,  # DDP: one forward of the wrapped student per backward
    )
    mask = scored.four.response_mask
    losses = per_token_losses(scored.four, config.steering.estimator, config.steering.detach_prior)
    vds_pool = _global_vds(accelerator, losses["vds"], mask) if processes > 1 else None
    return scored, objective(config.steering, losses, mask, vds_pool)


def descend(trainee: Trainee, accelerator, config: DistillConfig, terms, eta: float, measure_eta: bool):
    """One update of the rule's objective: η measured from this batch where asked, the loss's gradient, clipping
    and the AdamW step. Returns (loss, η, gradient norm, why the run must stop or None); on a non-finite loss
    or gradient nothing is stepped, so the student from before this step is kept."""
    processes, params = accelerator.num_processes, trainee.params
    assembled = None
    if measure_eta and processes == 1 and accelerator.scaler is None:
        eta, assembled = steered_gradients(terms, params)  # the update's gradient too: no backward below
    elif measure_eta:  # data-parallel (DDP reduces in backward) or a loss scaler: measure, then backward
        local = measured_eta(terms, params)
        eta = float(accelerator.reduce(torch.tensor(local, device=accelerator.device), "mean"))
    loss = terms.combined(eta)
    # Every process must agree to stop, or the others would wait forever in DDP's gradient all-reduce.
    bad = torch.tensor(float(not torch.isfinite(loss.detach())), device=accelerator.device)
    if processes > 1:
        bad = accelerator.reduce(bad, "sum")
    if float(bad) > 0:
        trainee.optimiser.zero_grad(set_to_none=True)
        return loss, eta, math.nan, f"the loss became {float(loss.detach())}"
    if assembled is not None:
        for param, grad in zip(params, assembled):
            param.grad = grad
    else:
        accelerator.backward(loss)
    if config.max_grad_norm > 0:
        grad_norm = float(accelerator.clip_grad_norm_(trainee.wrapped.parameters(), config.max_grad_norm))
    else:
        grad_norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))
    if not math.isfinite(grad_norm):
        trainee.optimiser.zero_grad(set_to_none=True)
        return loss, eta, grad_norm, f"the gradient became {grad_norm}"
    trainee.optimiser.step()
    trainee.optimiser.zero_grad(set_to_none=True)
    return loss, eta, grad_norm, None


def distill(
    pair: ModelPair,
    config: DistillConfig = DistillConfig(),
    data: TrainingData | None = None,
    callback: Callable[[StepRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    rollouts: Rollouts | None = None,
    probes: list[Row] | None = None,
    accelerator=None,
    evaluate_model: bool = True,
    grounding: GroundingReport | None = None,
    require_grounded_teacher: bool = False,
    on_start: Callable[[dict], None] | None = None,
) -> DistillResult:
    """Distil `pair.teacher` into a copy of `pair.student` on `data`; `pair` itself is left exactly as it was.

    Each step: the student answers its share of the batch (on-policy), the four passes score the answers, the
    rule turns the per-token losses into its objective, and AdamW descends it. `rollouts` replaces the data's
    prompts and the student's answers with a fixed global batch (tests); without `data` nothing is evaluated.
    `probes` are extra rows whose greedy answers are kept before/after. Before anything trains, both models'
    grounding is checked on a few of the data's rows (`vlod_core.grounding`; or `grounding`, checked by the
    caller): a teacher that ignores the image is logged and named in the card, or, with
    `require_grounded_teacher`, refused (`UngroundedTeacher`). `on_start(before)` gets the held-out metrics
    (the card's `before`) as soon as they are measured, before the first step: a live curve starts from them.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    if data is None and rollouts is None:
        raise ValueError("distill needs data (or fixed rollouts)")
    started = time.perf_counter()
    if grounding is None and data is not None:
        grounding = data_grounding(pair, data)
    if grounding is not None and require_grounded_teacher:
        require_grounded(grounding)
    # Some parameters never get a gradient (a vision tower's final norm when features come from a hidden
    # layer, as in the toy pair and many LLaVA checkpoints), which plain DDP refuses on the next step.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = accelerator or Accelerator(
        mixed_precision=config.mixed_precision, cpu=pair.device.type == "cpu", kwargs_handlers=[ddp]
    )
    compute = _compute_precision(pair, config)
    processes, process = accelerator.num_processes, accelerator.process_index
    if config.batch % processes:
        raise ValueError(f"batch ({config.batch}) must be divisible by the number of processes ({processes})")
    torch.manual_seed(config.seed)
    anchor = initial_student(pair, config, accelerator)
    trainee = prepare_student(pair, config, accelerator)
    given = rollouts is not None  # a fixed global batch: each process takes its share
    rollouts = rollouts or data_rollouts(data, config, process, processes)
    shard = slice(process * (config.batch // processes), (process + 1) * (config.batch // processes))
    main = accelerator.is_main_process
    evaluator = RunEvaluator(pair, config, data, probes or [], main, compute, metrics=evaluate_model)

    before = evaluator.metrics_before(trainee.plain, config)
    if on_start is not None and before is not None:
        on_start(before.to_dict())
    answers_before, probe_before = evaluator.answers(trainee.plain)
    records: list[StepRecord] = []
    stopped = None
    eta = 1.0 if not config.steering.steers or config.steering.eta == "auto" else float(config.steering.eta)

    for step in range(config.steps):
        if should_stop is not None and should_stop():
            stopped = f"stopped by the user after {step} steps"
            break
        images, questions, responses = rollouts(step)
        if given:
            images, questions, responses = images[shard], questions[shard], responses[shard]
        with accelerator.autocast(), compute():
            scored, terms = score_step(pair, trainee, config, accelerator, images, questions, responses, step, anchor)
        mask = scored.four.response_mask
        steering = config.steering
        measure_eta = steering.steers and steering.eta == "auto" and step % steering.eta_every == 0
        if measure_eta and accelerator.num_processes == 1 and eta_sample.applies(steering, len(scored.responses)):
            with accelerator.autocast(), compute():  # η from the first rows; the update is one backward
                eta = eta_sample.subsample_eta(pair, trainee.plain, scored, steering, trainee.params)
            measure_eta = False
        loss, eta, grad_norm, failure = descend(trainee, accelerator, config, terms, eta, measure_eta)
        if failure:
            stopped = f"{failure} at step {step}; kept the student from before this step"
            break
        record = StepRecord(
            step=step + 1,
            seconds=round(time.perf_counter() - started, 3),
            loss=float(loss.detach()),
            std=terms.logs["std"],
            lang=terms.logs["lang"],
            vis=terms.logs["vis"],
            lp=terms.logs["lp"],
            vds=terms.logs["vds"],
            lang_high_vds=terms.logs["lang_high_vds"],
            by_vds=terms.by_vds,
            eta=eta,
            grad_norm=grad_norm,
            response_tokens=int(mask.sum()),
        )
        if main and config.geometry_every and (step + 1) % config.geometry_every == 0:
            with compute():
                record.geometry = geometry_now(pair, trainee.plain, trainee.named_params, scored, config, anchor)
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            evaluation = evaluator.metrics(trainee.plain)
            record.evaluation = evaluation.to_dict() if evaluation is not None else None
        records.append(record)
        if callback is not None:
            callback(record)

    accelerator.wait_for_everyone()
    after = evaluator.metrics(trainee.plain)
    answers_after, probe_after = evaluator.answers(trainee.plain)
    card = RunCard(
        config=config.to_dict(),
        versions=library_versions(),
        pair={"teacher": pair.spec.teacher, "student": pair.spec.student, "variant": pair.spec.student_variant},
        data=data.description if data is not None else {"name": "fixed rollouts"},
        seconds=round(time.perf_counter() - started, 2),
        before=before.to_dict() if before else {},
        after=after.to_dict() if after else {},
        records=[r.to_dict() for r in records],
        answers_before=answers_before,
        answers_after=answers_after,
        probe_before=probe_before,
        probe_after=probe_after,
        stopped=stopped,
        grounding=grounding.to_dict() if grounding is not None else {},
    )
    trainee.plain.eval()
    return DistillResult(trainee.plain, card)


def initial_student(pair: ModelPair, config: DistillConfig, accelerator):
    """`vgs_anchored`'s frozen initial student (the shared one, only ever read); None for the other rules."""
    if config.steering.rule != "vgs_anchored":
        return None
    anchor = pair.student if pair.device == accelerator.device else copy.deepcopy(pair.student)
    return anchor.to(accelerator.device)


def geometry_now(pair: ModelPair, student, named_params, scored, config: DistillConfig, anchor=None) -> dict:
    """Angles of g_std, g_lang, g_vis on this step's batch (an extra forward on the plain student; the teacher's
    log-probs are the step's own: the teacher never changes). Per VDS bin only g_lang and g_vis (Fig. 3's angle):
    a bin's g_std would add a third of the bins' cost; `batch_geometry` (page 2, the CLI) computes it."""
    four = score_responses(
        pair, scored.prompts, scored.responses, student=student, student_grad=True, anchor=anchor, frozen=scored.four
    )
    losses = per_token_losses(four, config.steering.estimator, config.steering.detach_prior)
    geometry = geometry_of_losses(
        named_params, losses, four.response_mask, config.geometry_bins, config.steering.average, bin_std=False
    )
    return geometry.to_dict()
