"""What distilling a pair needs in memory, from the two configs alone, and whether the device has it.

Nothing is loaded: each model is instantiated on PyTorch's `meta` device (shapes without storage), which
counts every parameter exactly, vision tower and untied heads included, in well under a second even for an
8B config. The estimate adds up, in the chosen dtype:

- teacher weights (frozen, shared, in inference mode);
- student weights (the shared, cached copy) and the session's trainable copy of them, in float32 (master
  weights, whatever the pair's dtype); with LoRA the copy shares the weights and only the adapters are new
  (`vlod_core.lora`);
- gradients and AdamW's two moments for every trainable parameter (LoRA adapters are kept in float32);
- an activations allowance, stated here so it can be checked: the student's two contexts (image kept and
  image removed) run as one batch of 2·batch rows of `prompt + response` tokens; each language-model layer
  keeps 17 values per hidden unit per token for the backward pass (Korthikanti et al. 2022's 34·s·b·h bytes
  at 2 bytes a value, without the attention-score term that SDPA/flash attention do not store), or one value
  per hidden unit (the layer input) with gradient checkpointing, plus one layer's full set; the logits of
  all positions in the model dtype (student: values and gradient; teacher: values), and float32 log-probs of
  the response positions (student: log-probs, probabilities and gradient; teacher: log-probs); and the
  student's vision tower: 17 values per hidden unit per patch and layer for each image tile of the image
  context (measured on SmolVLM-256M: 293 MiB per 512-px tile, `bench/real_sizes.py`; the formula gives 321).

The check compares the total with the free memory of the target device (CUDA: `torch.cuda.mem_get_info`;
CPU: available RAM) and refuses with the numbers and the ways out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from vlod_core.pair import PairError

GIB = 1024**3
ADAPTER_BYTES = 4  # peft keeps LoRA adapters in float32 on a bf16/fp16 base (autocast_adapter_dtype)
ACTIVATION_VALUES_PER_HIDDEN = 17  # per layer and token, kept for backward (see the module docstring)
ADAMW_MOMENTS = 2


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part; `total` is what the check compares with free memory."""

    teacher_weights: int
    student_weights: int
    student_copy: int
    trainable_parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return (
            self.teacher_weights
            + self.student_weights
            + self.student_copy
            + self.gradients
            + self.optimizer
            + self.activations
        )

    def describe(self) -> str:
        parts = (
            ("teacher weights", self.teacher_weights),
            ("student weights", self.student_weights + self.student_copy),
            ("gradients", self.gradients),
            ("AdamW states", self.optimizer),
            ("activations", self.activations),
        )
        return ", ".join(f"{name} {size / GIB:.2f}" for name, size in parts) + " GiB"

    def to_dict(self) -> dict:
        return asdict(self) | {"total": self.total}


def meta_model(config):
    """The model a config describes, on the meta device: shapes only, no memory."""
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are one Parameter, counted once


def lora_parameter_count(model, rank: int) -> int:
    """Adapter parameters for `rank` on the layers `vlod_core.lora` targets: rank · (in + out) per layer."""
    from vlod_core.lora import target_layers

    return sum(rank * (layer.in_features + layer.out_features) for _, layer in target_layers(model))


def _activations(config, dtype_bytes: int, rows: int, tokens: int, response: int, checkpointing: bool) -> int:
    text = config.get_text_config()
    hidden, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
    per_layer = ACTIVATION_VALUES_PER_HIDDEN * hidden * rows * tokens
    kept = (hidden * rows * tokens * layers + per_layer) if checkpointing else per_layer * layers
    logits = rows * tokens * vocab * dtype_bytes
    return kept * dtype_bytes + 2 * logits + 3 * rows * response * vocab * 4


def _vision_activations(config, dtype_bytes: int, images: int, checkpointing: bool) -> int:
    """The student's vision tower, kept for its backward pass: the same 17 values per hidden unit per patch and
    layer, for every image tile of the image context (0 where the config gives no fixed patch grid)."""
    vision = getattr(config, "vision_config", None)
    hidden = getattr(vision, "hidden_size", 0) or 0
    layers = getattr(vision, "num_hidden_layers", None) or getattr(vision, "depth", 0) or 0
    side, patch = getattr(vision, "image_size", 0) or 0, getattr(vision, "patch_size", 0) or 0
    if not (hidden and layers and side and patch):
        return 0
    per_layer = ACTIVATION_VALUES_PER_HIDDEN * hidden * (side // patch) ** 2 * images
    kept = hidden * (side // patch) ** 2 * images * layers + per_layer if checkpointing else per_layer * layers
    return kept * dtype_bytes


def estimate_training_memory(
    teacher_config,
    student_config,
    dtype: torch.dtype,
    batch: int,
    lengths: tuple[int, int],
    lora_rank: int | None = None,
    gradient_checkpointing: bool = False,
    image_tiles: int = 1,
) -> MemoryEstimate:
    """Bytes needed to distil `teacher_config` into `student_config`; `lengths` = (prompt, response) tokens.

    `image_tiles` is how many vision-tower inputs one image becomes (SmolVLM splits a large image into up to
    16 tiles plus a global view: 17); each costs the student's vision tower its activations.

    The prompt length counts the image tokens (a 448x448 image is 256 tokens for Qwen2.5-VL, 64 per crop for
    SmolVLM-256M); see the module docstring for what each part holds.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    prompt, response = lengths
    if prompt < 1 or response < 1:
        raise ValueError(f"lengths must be >= 1 tokens each, got {lengths}")
    size = torch.empty((), dtype=dtype).element_size()
    teacher, student = meta_model(teacher_config), meta_model(student_config)
    teacher_params, student_params = parameter_count(teacher), parameter_count(student)
    rows, tokens = 2 * batch, prompt + response  # both contexts in one pass
    if lora_rank is None:  # float32 master weights whatever the pair's dtype (vlod_core.distill.private_student)
        trainable, trainable_bytes, copy_bytes = student_params, 4, student_params * 4
    else:
        trainable, trainable_bytes, copy_bytes = lora_parameter_count(student, lora_rank), ADAPTER_BYTES, 0
    student_acts = _activations(student_config, size, rows, tokens, response, gradient_checkpointing)
    student_acts += _vision_activations(student_config, size, batch * image_tiles, gradient_checkpointing)
    text = teacher_config.get_text_config()
    teacher_acts = rows * tokens * text.vocab_size * size + rows * response * text.vocab_size * 4  # no backward
    return MemoryEstimate(
        teacher_weights=teacher_params * size,
        student_weights=student_params * size,
        student_copy=copy_bytes + (trainable * trainable_bytes if lora_rank is not None else 0),
        trainable_parameters=trainable,
        gradients=trainable * trainable_bytes,
        optimizer=ADAMW_MOMENTS * trainable * trainable_bytes,
        activations=student_acts + teacher_acts,
    )


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` now: CUDA's free memory, or the RAM the OS can give without swapping."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def check_fits(estimate: MemoryEstimate, device: torch.device, free: int | None = None, lora: bool = False) -> None:
    """Raise `PairError` with the numbers and the ways out when the estimate exceeds the free memory."""
    free = free_memory(device) if free is None else free
    if estimate.total <= free:
        return
    ways = ["--gradient-checkpointing", "--dtype bfloat16", "a smaller --batch or shorter answers"]
    if not lora:
        ways.insert(0, "--lora R (train adapters only, e.g. --lora 16)")
    raise PairError(
        f"training this pair needs about {estimate.total / GIB:.1f} GiB ({estimate.describe()}) but only "
        f"{free / GIB:.1f} GiB is free on {device}; ways out: {', '.join(ways)}"
    )


def configs_of(spec, folders: tuple[str, str] | None = None) -> tuple[object, object]:
    """The teacher's and student's configs of a `PairSpec` (from `folders` when given, as `load_pair`), read
    from config.json alone."""
    from transformers import AutoConfig

    from vlod_core.pair import _check_source

    names = folders or (spec.teacher, spec.student)
    configs = []
    for name in names:
        _check_source(name, spec.trust_remote_code)
        try:
            configs.append(AutoConfig.from_pretrained(name, trust_remote_code=spec.trust_remote_code))
        except (OSError, ValueError) as error:
            raise PairError(f"{name}: could not read its config ({error})") from None
    return configs[0], configs[1]


def check_pair_memory(
    spec,
    batch: int,
    lengths: tuple[int, int],
    lora_rank: int | None = None,
    gradient_checkpointing: bool = False,
    free: int | None = None,
    folders: tuple[str, str] | None = None,
) -> MemoryEstimate:
    """Before loading: estimate what distilling `spec`'s pair needs and refuse if the device has not got it."""
    from vlod_core.pair import resolve_device, resolve_dtype

    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    teacher_config, student_config = configs_of(spec, folders)
    estimate = estimate_training_memory(
        teacher_config, student_config, dtype, batch, lengths, lora_rank, gradient_checkpointing
    )
    check_fits(estimate, device, free, lora=lora_rank is not None)
    return estimate
