"""The on-policy distillation loop: sample, score four ways, build the rule's loss, step AdamW.

The loop trains a private copy of the student (the caller's model, perhaps cached and shared by other
sessions, is never touched) and returns it with a run card. An `accelerate.Accelerator` owns device
placement, mixed precision and gradient synchronisation, so `accelerate launch --num_processes N -m
vlod_core distill ...` runs the same code data-parallel: each process samples and scores its share of
the batch, DDP averages the gradients. η measured from gradients ("auto") is averaged across processes.

Toy defaults: lr 1e-3 with AdamW (the paper's 1e-6 is for pretrained billion-parameter students; a
0.13 M-parameter toy student barely moves at that rate), batch 32, gradient clipping at 1.0.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image

from vlod_core.decomposition import kl, token_kls
from vlod_core.evaluation import Accuracy, answers, evaluate, fixed_examples, greedy_answers, held_out_examples
from vlod_core.geometry import geometry_of_losses
from vlod_core.inputs import ABLATIONS, build_scoring_batch
from vlod_core.pair import ModelPair
from vlod_core.results import RunCard, StepRecord
from vlod_core.sampling import SamplingConfig, generate
from vlod_core.scoring import FourLogProbs, context_logprobs, score_four
from vlod_core.steering import SteeringConfig, eta_from_gradients, objective, sampled_token_losses
from vlod_core.toy import world

logger = logging.getLogger(__name__)

# (images, questions, response ids) of the whole batch for one step; tests pass fixed ones.
Rollouts = Callable[[int], tuple[list[Image.Image], list[str], list[list[int]]]]


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 100
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0 turns clipping off
    seed: int = 0
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=6))
    ablation: str = "remove"
    geometry_every: int = 0  # 0: never (three extra backward passes each time)
    geometry_bins: int = 10
    eval_every: int = 0  # 0: only before and after
    eval_examples: int = 400
    answer_examples: int = 6
    # `standard` needs only the image passes; the image-free ones feed the logged ℓLang, ℓVis and VDS.
    # k > 1 scores them every k-th step only (NaN in the records between), about 30% faster per step.
    decompose_every: int = 1
    mixed_precision: str = "no"  # accelerate's: "no", "bf16", "fp16"

    def __post_init__(self):
        for name in (
            "steps",
            "batch",
            "seed",
            "geometry_every",
            "geometry_bins",
            "eval_every",
            "eval_examples",
            "decompose_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if not 1 <= self.steps <= 100_000:
            raise ValueError(f"steps must be between 1 and 100000, got {self.steps}")
        if not 1 <= self.batch <= 4096:
            raise ValueError(f"batch must be between 1 and 4096, got {self.batch}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1.0):
            raise ValueError(f"lr (learning rate) must be in (0, 1], got {self.lr}")
        if not self.weight_decay >= 0:  # also refuses NaN
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm must be >= 0 (0 = off), got {self.max_grad_norm}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        for name in ("geometry_every", "eval_every", "answer_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_examples < 1:
            raise ValueError(f"eval_examples must be >= 1, got {self.eval_examples}")
        if self.decompose_every < 1:
            raise ValueError(f"decompose_every must be >= 1, got {self.decompose_every}")

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


def step_seed(seed: int, step: int, process: int = 0) -> int:
    return (seed * 1_000_003 + step * 7919 + process * 104_729) % (2**31)


def toy_rollouts(student, processor, config: DistillConfig, process: int, processes: int) -> Rollouts:
    """On-policy: this process's share of fresh toy examples, answered by the current student."""

    def rollouts(step: int):
        share = config.batch // processes
        examples = world.sample_examples(share, seed=step_seed(config.seed, step, process))
        images, questions = [ex.image() for ex in examples], [ex.question for ex in examples]
        ids = generate(student, processor, questions, images, config.sampling, step_seed(config.seed, step, process))
        eos = processor.tokenizer.eos_token_id
        return images, questions, [r if r else [eos] for r in ids]

    return rollouts


def per_token_losses(four: FourLogProbs, steering: SteeringConfig, anchor_ablated: torch.Tensor | None):
    args = (four.student_image, four.student_ablated, four.teacher_image, four.teacher_ablated)
    if steering.estimator == "sampled":
        return sampled_token_losses(four, anchor_ablated, steering.detach_prior)
    return token_kls(*args, four.response_mask, steering.detach_prior, prior_for_target=anchor_ablated)


def scored_losses(teacher, student, anchor, batch, vocab_size: int, pad_id: int, steering: SteeringConfig):
    """The four passes (with student gradients) and the per-token losses the rule needs, (B, T) each.

    A batch built without the ablated context (`with_ablated=False`) gets ℓStd alone. `anchor` is the frozen
    initial student of `vgs_anchored`, whose text-only log-probs replace the current ones inside q*.
    """
    four = score_four(teacher, student, batch, vocab_size, pad_id, student_grad=True)
    if batch.ablated is None:
        return image_only_losses(four)
    anchor_ablated = None
    if anchor is not None:
        with torch.no_grad():
            anchor_ablated = context_logprobs(anchor, batch.ablated, batch.response_ids.shape[1], vocab_size)
    return per_token_losses(four, steering, anchor_ablated)


def image_only_losses(four: FourLogProbs) -> dict[str, torch.Tensor]:
    """ℓStd alone (the `standard` rule's whole loss); the terms that need the image-free passes are NaN."""
    std = kl(four.student_image, four.teacher_image, four.response_mask.to(four.student_image.dtype))
    unknown = torch.full_like(std, float("nan")).detach()
    return {"std": std, "lang": unknown, "vis": unknown, "vds": unknown}


def _global_vds(accelerator, vds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Every process's real-token VDS values: the VDS quantiles are over the global batch, as in one process."""
    local = vds.detach()[mask.bool()].float()
    gathered = accelerator.gather(accelerator.pad_across_processes(local, dim=0, pad_index=float("nan")))
    return gathered[~torch.isnan(gathered)]


def _probe_answers(model, processor, probes: list[tuple[Image.Image, str]]) -> list[dict]:
    return greedy_answers(model, processor, [image for image, _ in probes], [question for _, question in probes])


def distill(
    pair: ModelPair,
    config: DistillConfig = DistillConfig(),
    callback: Callable[[StepRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    rollouts: Rollouts | None = None,
    probes: list[tuple[Image.Image, str]] | None = None,
    accelerator=None,
    evaluate_model: bool = True,
) -> DistillResult:
    """Distil `pair.teacher` into a copy of `pair.student`; `pair` itself is left exactly as it was."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from vlod_core.toy.build import library_versions

    started = time.perf_counter()
    # Some parameters never get a gradient (a vision tower's final norm when features come from a hidden
    # layer, as in the toy pair and many LLaVA checkpoints), which plain DDP refuses on the next step.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = accelerator or Accelerator(
        mixed_precision=config.mixed_precision, cpu=pair.device.type == "cpu", kwargs_handlers=[ddp]
    )
    processes, process = accelerator.num_processes, accelerator.process_index
    if config.batch % processes:
        raise ValueError(f"batch ({config.batch}) must be divisible by the number of processes ({processes})")
    torch.manual_seed(config.seed)
    processor, tokenizer = pair.processor, pair.tokenizer
    vocab, pad = pair.vocab_size, tokenizer.pad_token_id
    teacher = pair.teacher  # frozen; shared, never written to
    student = copy.deepcopy(pair.student).to(accelerator.device)
    student.train()
    anchor = None
    if config.steering.rule == "vgs_anchored":
        anchor = copy.deepcopy(pair.student).to(accelerator.device).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    student, optimiser = accelerator.prepare(student, optimiser)
    plain = accelerator.unwrap_model(student)
    params = [p for p in plain.parameters() if p.requires_grad]
    named_params = [(n, p) for n, p in plain.named_parameters() if p.requires_grad]
    given = rollouts is not None  # a fixed global batch: each process takes its share
    rollouts = rollouts or toy_rollouts(plain, processor, config, process, processes)
    shard = slice(process * (config.batch // processes), (process + 1) * (config.batch // processes))

    main = accelerator.is_main_process
    eval_set = held_out_examples(config.eval_examples)
    fixed = fixed_examples(config.answer_examples)
    probes = probes or []

    def measure() -> Accuracy | None:
        return evaluate(plain, processor, vocab, eval_set) if (main and evaluate_model) else None

    before = measure()
    answers_before = answers(plain, processor, fixed) if main and fixed else []
    probe_before = _probe_answers(plain, processor, probes) if main else []
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
        with_ablated = config.needs_ablated(step)
        batch = build_scoring_batch(processor, images, questions, responses, config.ablation, with_ablated)
        batch = batch.to(accelerator.device)
        with accelerator.autocast():
            losses = scored_losses(teacher, student, anchor, batch, vocab, pad, config.steering)
            vds_pool = _global_vds(accelerator, losses["vds"], batch.response_mask) if processes > 1 else None
            terms = objective(config.steering, losses, batch.response_mask, vds_pool)
        if config.steering.steers and config.steering.eta == "auto" and step % config.steering.eta_every == 0:
            grad_std = torch.autograd.grad(terms.std, params, retain_graph=True, allow_unused=True)
            grad_steer = torch.autograd.grad(terms.steer, params, retain_graph=True, allow_unused=True)
            local = eta_from_gradients(
                [torch.zeros_like(p) if g is None else g for p, g in zip(params, grad_std)],
                [torch.zeros_like(p) if g is None else g for p, g in zip(params, grad_steer)],
            )
            eta = float(accelerator.reduce(torch.tensor(local, device=accelerator.device), "mean"))
        loss = terms.combined(eta)
        # Every process must agree to stop, or the others would wait forever in DDP's gradient all-reduce.
        bad = torch.tensor(float(not torch.isfinite(loss.detach())), device=accelerator.device)
        if processes > 1:
            bad = accelerator.reduce(bad, "sum")
        if float(bad) > 0:
            stopped = f"the loss became {float(loss.detach())} at step {step}; kept the student from before this step"
            optimiser.zero_grad(set_to_none=True)
            break
        accelerator.backward(loss)
        if config.max_grad_norm > 0:
            grad_norm = float(accelerator.clip_grad_norm_(student.parameters(), config.max_grad_norm))
        else:
            grad_norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))
        if not math.isfinite(grad_norm):
            stopped = f"the gradient became {grad_norm} at step {step}; kept the student from before this step"
            optimiser.zero_grad(set_to_none=True)
            break
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

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
            eta=eta,
            grad_norm=grad_norm,
            response_tokens=int(batch.response_mask.sum()),
        )
        if main and config.geometry_every and (step + 1) % config.geometry_every == 0:
            record.geometry = geometry_now(pair, plain, named_params, batch, config, anchor)
        if main and config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            record.accuracy = measure().to_dict() if evaluate_model else None
        records.append(record)
        if callback is not None:
            callback(record)

    accelerator.wait_for_everyone()
    after = measure()
    empty = {"accuracy_image": float("nan"), "accuracy_no_image": float("nan")}
    card = RunCard(
        config=config.to_dict(),
        versions=library_versions(),
        pair={"teacher": pair.spec.teacher, "student": pair.spec.student, "variant": pair.spec.student_variant},
        seconds=round(time.perf_counter() - started, 2),
        before=before.to_dict() if before else empty,
        after=after.to_dict() if after else empty,
        records=[r.to_dict() for r in records],
        answers_before=answers_before,
        answers_after=answers(plain, processor, fixed) if main and fixed else [],
        probe_before=probe_before,
        probe_after=_probe_answers(plain, processor, probes) if main else [],
        stopped=stopped,
    )
    plain.eval()
    return DistillResult(plain, card)


def geometry_now(pair: ModelPair, student, named_params, batch, config: DistillConfig, anchor=None) -> dict:
    """Angles of g_std, g_lang, g_vis on this step's batch (an extra forward on the plain student)."""
    pad = pair.tokenizer.pad_token_id
    losses = scored_losses(pair.teacher, student, anchor, batch, pair.vocab_size, pad, config.steering)
    geometry = geometry_of_losses(
        named_params, losses, batch.response_mask, config.geometry_bins, config.steering.average
    )
    return geometry.to_dict()
