"""vlod's update rules inside TRL: `DecomposedDistillationTrainer`, a `trl.DistillationTrainer` whose loss is a rule.

Where a team distils at scale (DeepSpeed ZeRO-3 or FSDP2, vLLM generation, eight GPUs) is TRL, not vlod's lab
loop. This trainer keeps everything TRL's `DistillationTrainer` (TRL 1.16) does around the loss — the data
loader and its generation batches, on-policy sampling with transformers or vLLM (colocate or server), the
wrapped models, TRL's loss normalisation (a token mean over the whole generation batch of every process,
correct under gradient accumulation) and its metrics — and replaces the one hook where the loss is computed,
`compute_loss`:

1. the batch's rows (image, question) are encoded by `vlod_core.inputs` in the image context and in the
   image-free one (`ablation`), and the student's sampled completions are appended to both
   (`build_scoring_batch`); a check holds the image context's prompt to the token ids TRL sampled from;
2. `scoring.score_four` runs the four passes through the wrapped student and TRL's prepared teacher;
3. `losses.per_token_losses` and `steering.objective` build the rule (`standard`, `vgs`, ...), η is measured
   with `steering.eta_from_gradients` (or fixed), and the result is rescaled from vlod's token mean to TRL's
   normaliser: no formula of the method is written twice;
4. ℓStd, ℓLang, ℓVis, VDS and its quantiles, η and the preservation term go into TRL's metrics (`vlod/...`),
   so TensorBoard, W&B or trackio show them beside the loss.

Rows are one user message holding one image and its text (TRL's vision format, or any `vlod_core.data`
source through `trl_dataset`). The rules are reverse KLs at temperature 1 (`beta` must stay 1.0).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass, field

import torch
from trl import DistillationConfig, DistillationTrainer

from vlod_core.data import Row, RowSampler, TrainingData, VQASet
from vlod_core.distill import DistillConfig, _global_vds
from vlod_core.inputs import ABLATIONS, CONTEXTS, build_scoring_batch, encode_rows, messages
from vlod_core.losses import per_token_losses
from vlod_core.sampling import structural_token_ids
from vlod_core.scoring import score_four
from vlod_core.sources import RowError, row_from_record
from vlod_core.steering import RULES, SteeringConfig, measured_eta, objective, vds_quantile

logger = logging.getLogger(__name__)

METRIC_PREFIX = "vlod/"
VDS_QUANTILES = (0.1, 0.5, 0.7, 0.9)  # 0.7 is the preservation gate of the rules (top 30% by VDS)
# Per-row columns this trainer adds to TRL's generation batch; TRL shuffles and splits lists with the tensors.
IMAGES, QUESTIONS = "vlod_images", "vlod_questions"


def _vlod_setting(config, name: str):
    """A field with the default and help of vlod's own setting (`vlod_core.settings`): one source for both."""
    source = {f.name: f for f in dataclasses.fields(config)}[name]
    return field(default=source.default, metadata={"help": source.metadata["setting"].help})


@dataclass
class DecomposedDistillationConfig(DistillationConfig):
    """`trl.DistillationConfig` plus the rule: `steering`, `gamma`, `lam`, `eta`, `ablation` (as vlod's CLI).

    The loss averages over response tokens, as TRL does (`SteeringConfig.average="token"`), and the VDS quantile
    is taken over each micro-batch of every process together.
    """

    steering: str = field(default="vgs", metadata={"help": f"the update rule, one of {', '.join(RULES)}"})
    gamma: float = _vlod_setting(SteeringConfig, "gamma")
    lam: float = _vlod_setting(SteeringConfig, "lam")
    eta: str = _vlod_setting(SteeringConfig, "eta")  # 'auto' or a number (HfArgumentParser hands text)
    ablation: str = _vlod_setting(DistillConfig, "ablation")

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.eta, str) and self.eta != "auto":
            try:
                self.eta = float(self.eta)
            except ValueError:
                raise ValueError(f"eta must be 'auto' or a positive number, got {self.eta!r}") from None
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if self.beta != 1.0:
            raise ValueError(
                f"beta = {self.beta}: vlod's rules are built on the reverse KL (TRL's beta = 1.0); "
                "use trl.DistillationTrainer for forward KL or JSD"
            )
        self.steering_config()  # refuses an unknown rule or a bad γ, λ, η with vlod's own messages

    def steering_config(self) -> SteeringConfig:
        return SteeringConfig(rule=self.steering, gamma=self.gamma, lam=self.lam, eta=self.eta, average="token")


def trl_rows(rows: list[Row]) -> list[dict]:
    """vlod rows as TRL vision records: `prompt` one user message with an image placeholder, `images`."""
    return [{"prompt": messages(row.question, with_image=True), "images": [row.load_image()]} for row in rows]


def trl_dataset(source: TrainingData | VQASet | list[Row], rows: int | None = None, seed: int = 0):
    """A `datasets.Dataset` in TRL's vision format from a `vlod_core.data` source (its training rows).

    A source that never runs out (the toy world) gives `rows` rows drawn with `seed`.
    """
    from datasets import Dataset

    if isinstance(source, VQASet):
        chosen = source.rows
    elif isinstance(source, TrainingData):
        if isinstance(source.train, RowSampler) and rows is None:
            chosen = source.train.rows
        elif rows is None:
            raise ValueError(f"{source.description.get('name', 'this source')} never runs out: say how many rows")
        else:
            chosen = source.train.prompts(0, rows, seed)
    else:
        chosen = list(source)
    if not chosen:
        raise ValueError("the source has no training rows")
    return Dataset.from_list(trl_rows(chosen))


def _rows_needed(args) -> int:
    if args.max_steps is None or args.max_steps <= 0:
        raise ValueError("a data source that never runs out needs max_steps in the config")
    return args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def _as_dataset(data, args):
    if isinstance(data, TrainingData) and not isinstance(data.train, RowSampler):
        return trl_dataset(data, _rows_needed(args), args.seed)
    if isinstance(data, (TrainingData, VQASet)) or (isinstance(data, list) and data and isinstance(data[0], Row)):
        return trl_dataset(data)
    return data


class DecomposedDistillationTrainer(DistillationTrainer):
    """`trl.DistillationTrainer` with vlod's decomposed loss and its per-token logs (see the module docstring).

    `train_dataset` is a TRL vision data set (`prompt` as messages with an image placeholder; `images` or
    `image`) or a `vlod_core.data` source (`TrainingData`, `VQASet`, a list of `Row`).
    """

    _tag_names = ["trl", "distillation", "vlod"]
    _name = "DecomposedDistillation"

    def __init__(self, model, teacher_model=None, args: DecomposedDistillationConfig | None = None, **kwargs):
        if args is None:
            args = DecomposedDistillationConfig("vlod-distillation")
        if not isinstance(args, DecomposedDistillationConfig):
            raise TypeError("args must be a DecomposedDistillationConfig")
        if kwargs.get("tools"):
            raise ValueError("tool calling is not supported: vlod scores one answer to one (image, question)")
        for name in ("train_dataset", "eval_dataset"):
            if kwargs.get(name) is not None:
                kwargs[name] = _as_dataset(kwargs[name], args)
        super().__init__(model, teacher_model, args, **kwargs)
        if self.teacher_model is None:
            raise ValueError("DecomposedDistillationTrainer needs a local teacher_model (all four passes run here)")
        self.steering = args.steering_config()
        if self.steering.eta == "auto" and self.steering.steers and (self.is_fsdp_enabled or self._zero3()):
            raise ValueError(
                "eta='auto' measures two gradients with torch.autograd.grad, which sharded parameters (ZeRO-3, "
                "FSDP) do not give; fix η as the paper does (eta=0.41 for a 2B student at γ = 2)"
            )
        if args.temperature != 1.0:
            logger.warning(
                "temperature %s changes the sampling only: the rules compare the models' own distributions",
                args.temperature,
            )
        self.vocab_size = len(self._tokenizer)  # the shared vocabulary (padded output rows are left out)
        text_vocab = self.model.config.get_text_config().vocab_size
        if text_vocab < self.vocab_size:
            raise ValueError(f"the student's output layer ({text_vocab}) is smaller than the tokenizer")
        self.anchor = None
        if self.steering.rule == "vgs_anchored":  # the initial student, frozen: q* from its text-only distribution
            anchor = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
            self.anchor = self._prepare_frozen(anchor)
        if not args.use_vllm and not (args.generation_kwargs or {}).get("suppress_tokens"):
            # vlod's samples never contain structural tokens (chat markers, image placeholders, padding)
            suppressed = set(self.generation_kwargs.get("suppress_tokens") or [])
            suppressed = sorted(suppressed | set(structural_token_ids(self._tokenizer)))
            self.generation_kwargs["suppress_tokens"] = suppressed
            self.generation_config.suppress_tokens = suppressed
        self._eta = 1.0 if not self.steering.steers or self.steering.eta == "auto" else float(self.steering.eta)
        self._grounding_checked = False

    # ------------------------------------------------------------------------------------------------ setup

    def _zero3(self) -> bool:
        plugin = self.args.deepspeed_plugin
        return bool(self.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3)

    def _prepare_frozen(self, model):
        from trl.models import prepare_deepspeed

        if self.is_deepspeed_enabled:
            return prepare_deepspeed(model, self.accelerator)
        return self.accelerator.prepare_model(model, evaluation_mode=True)

    # -------------------------------------------------------------------------------------------- the batch

    def _generate_and_score_completions(self, inputs):
        """TRL's generation (transformers or vLLM), plus each row's image and question for vlod's contexts."""
        rows = []
        for index, example in enumerate(inputs):
            try:
                rows.append(row_from_record(example, label=f"row {index}"))
            except RowError as error:
                raise ValueError(
                    f"row {index} of the batch: {error}. vlod scores rows of one user message with one image "
                    "(TRL's vision format: prompt=[{'role': 'user', 'content': [{'type': 'image'}, "
                    "{'type': 'text', 'text': ...}]}], images=[image])"
                ) from None
        output = super()._generate_and_score_completions(inputs)
        output[IMAGES] = [row.load_image() for row in rows]
        output[QUESTIONS] = [row.question for row in rows]
        return output

    def _check_same_prompts(self, prompts, inputs) -> None:
        """The prompt vlod scores must be the one TRL's sampler answered, token for token."""
        encoded = prompts.encoded[("student", "image")]
        ours = [ids[m.bool()].tolist() for ids, m in zip(encoded["input_ids"], encoded["attention_mask"])]
        theirs = [ids[m.bool()].tolist() for ids, m in zip(inputs["prompt_ids"], inputs["prompt_mask"])]
        for index, (mine, sampled) in enumerate(zip(ours, theirs)):
            if mine != sampled:
                decode = self._tokenizer.decode
                raise ValueError(
                    f"row {index}: TRL sampled from {decode(sampled)!r} but vlod would score {decode(mine)!r}. vlod "
                    "renders each row as one user message (the image, then the question); give prompts in that form "
                    "(no system or earlier turns)"
                )

    def _decompose_now(self, mode: str) -> bool:
        """Whether this micro-batch needs the image-free passes: always for a steering rule, else when logged."""
        steering = self.steering
        if steering.steers or steering.estimator != "full" or mode == "eval":
            return True
        if self.args.logging_strategy != "steps":
            return True
        step = self.state.global_step + 1  # the optimiser step this micro-batch belongs to
        every = self.state.logging_steps or self.args.logging_steps
        return step % max(1, int(every)) == 0 or (step == 1 and self.args.logging_first_step)

    # ---------------------------------------------------------------------------------------------- the loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The rule's loss on TRL's micro-batch, normalised as TRL normalises its own."""
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        distributed = self.accelerator.num_processes > 1
        contexts = CONTEXTS if self._decompose_now(mode) else ("image",)
        images, questions = inputs[IMAGES], inputs[QUESTIONS]
        if mode == "train" and not self._grounding_checked:
            self._grounding_checked = True
            warning = self.teacher_grounding_warning(images, questions)
            if warning and self.accelerator.is_main_process:
                logger.warning(warning)

        keep = inputs["completion_mask"].bool()
        responses = [ids[m].tolist() for ids, m in zip(inputs["completion_ids"], keep)]
        prompts = encode_rows(self.processing_class, images, questions, self.args.ablation, contexts).to(device)
        self._check_same_prompts(prompts, inputs)
        batch = build_scoring_batch(prompts, responses, self._tokenizer.pad_token_id, contexts)
        self.teacher_model.eval()
        four = score_four(
            self.teacher_model,
            model,  # the wrapped student: DDP/FSDP/DeepSpeed see the forward
            batch,
            self.vocab_size,
            self._tokenizer.pad_token_id,
            student_grad=torch.is_grad_enabled(),
            merge=distributed,  # DDP: one forward of the wrapped student per backward
            anchor=self.anchor,
        )
        losses = per_token_losses(four, self.steering.estimator, self.steering.detach_prior)
        mask = four.response_mask
        vds_pool = None
        if distributed and four.teacher_ablated is not None:
            vds_pool = _global_vds(self.accelerator, losses["vds"], mask)
        terms = objective(self.steering, losses, mask, vds_pool)
        eta = self._scale(terms, model)
        loss = terms.combined(eta)
        if mode == "train" and inputs.get("num_items_in_batch") is not None:
            # vlod's token mean over this micro-batch -> TRL's: token sum over the global generation batch
            # (every process, every accumulation step) divided by its token count, DDP's averaging undone.
            items = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            loss = loss * mask.sum().to(loss.dtype) / items.to(loss.device, loss.dtype)
        self._log_decomposition(mode, terms, eta, losses["vds"].detach(), mask, vds_pool)
        return (loss, None) if return_outputs else loss

    def _scale(self, terms, model) -> float:
        """η: 1 for `standard`, the fixed value, or measured from this micro-batch's gradients (mean over processes)."""
        steering = self.steering
        if not steering.steers or steering.eta != "auto" or not torch.is_grad_enabled():
            return self._eta
        params = [p for p in self.accelerator.unwrap_model(model).parameters() if p.requires_grad]
        eta = measured_eta(terms, params)
        if self.accelerator.num_processes > 1:
            eta = float(self.accelerator.reduce(torch.tensor(eta, device=self.accelerator.device), "mean"))
        self._eta = eta
        return eta

    def _log_decomposition(self, mode, terms, eta, vds, mask, vds_pool) -> None:
        """ℓStd, ℓLang, ℓVis, VDS (mean and quantiles), ℓLP, λ·ℓLP and η into TRL's metrics, mean over processes."""
        values = {name: terms.logs[name] for name in ("std", "lang", "vis", "vds", "lp", "lang_high_vds")}
        values["preserve"] = float(terms.preserve.detach()) if terms.preserve is not None else 0.0
        values["eta"] = eta
        pool = vds_pool if vds_pool is not None else vds[mask.bool()].float()
        whole = torch.ones_like(pool, dtype=torch.bool)
        for q in VDS_QUANTILES:
            measured = pool.numel() and not torch.isnan(pool).any()
            values[f"vds_q{round(q * 100)}"] = float(vds_quantile(pool, whole, q)) if measured else math.nan
        if self.accelerator.num_processes > 1:
            stacked = torch.tensor(list(values.values()), device=self.accelerator.device, dtype=torch.float64)
            values = dict(zip(values, self.accelerator.reduce(stacked, "mean").tolist()))
        for name, value in values.items():
            if not math.isnan(value):  # the image-free terms of a step that did not compute them
                self._metrics[mode][METRIC_PREFIX + name].append(value)

    # ----------------------------------------------------------------------------------------------- hooks

    def teacher_grounding_warning(self, images, questions) -> str | None:
        """Called once, at the first training step, with its rows: the warning `vlod_core.grounding` gives when the
        teacher's answers do not depend on which image it gets (None when they do)."""
        from vlod_core.grounding import measure, pick_rows

        teacher = self.accelerator.unwrap_model(self.teacher_model)
        rows = pick_rows([Row(image, question) for image, question in zip(images, questions)])
        name = getattr(teacher.config, "_name_or_path", "") or type(teacher).__name__
        grounding = measure(
            teacher, self.processing_class, self._tokenizer, self.vocab_size, rows, role="teacher", name=name
        )
        return grounding.warning()
