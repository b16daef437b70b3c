"""Load a teacher/student pair of VLMs through transformers' Auto classes and check they can be distilled.

A pair is two `AutoModelForImageTextToText` checkpoints (a local folder or a Hub id) and their processors
(`vlod_core.processors.load_processor`: `AutoProcessor`, or the same class for images only when its video
part needs torchvision). Nothing here knows a model family: the toy LLaVA pair, SmolVLM, Qwen-VL or Gemma 3
pairs all go the same way. Compatibility is checked before anything runs (METHOD.md: one shared
vocabulary): the tokenizers must agree token by token and in their special tokens (embedding tables may
carry extra padded rows), both chat templates must render the same text and give the image a place, and
every failure is a `PairError` that says which part differs. When the two processors encode an image
differently (size, token count, grid), the pair keeps the teacher's processor too, so each model can get
its own prompt. `trust_remote_code` is off unless the caller turns it on; weights load as safetensors.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from vlod_core.processors import is_image_only, load_processor, needs_torchvision

logger = logging.getLogger(__name__)

TOY = "toy"  # the spec name of the embedded toy pair
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # weights formats that unpickle (and so can run code)


class PairError(ValueError):
    """A pair cannot be loaded or used; the message is meant for the user as it is."""


@dataclass(frozen=True)
class PairSpec:
    """Where a pair comes from. Frozen, so it can key caches."""

    teacher: str = TOY
    student: str = TOY
    dtype: str = "auto"  # "auto": bf16 on CUDA, fp32 on the CPU; or "float32", "bfloat16", "float16"
    device: str = "auto"  # "auto": cuda if available, else cpu
    trust_remote_code: bool = False
    student_variant: str = "student"  # toy only: "student" or "student_blind"

    def __post_init__(self):
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise PairError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.student_variant not in ("student", "student_blind"):
            raise PairError(f"student_variant must be 'student' or 'student_blind', got {self.student_variant!r}")


@dataclass
class ModelPair:
    """A loaded, checked pair. The teacher is frozen and in eval mode; nobody trains `student` in place."""

    teacher: torch.nn.Module
    student: torch.nn.Module
    processor: object
    spec: PairSpec
    vocab_size: int  # the shared vocabulary all distributions are compared over
    notes: list[str] = field(default_factory=list)
    # The teacher's own processor when it encodes images differently from the student's (image size,
    # image-token count); None when the student's serves both. Response ids are shared either way.
    teacher_processor: object | None = None

    @property
    def teacher_inputs_processor(self):
        """The processor that builds the teacher's prompts."""
        return self.teacher_processor if self.teacher_processor is not None else self.processor

    @property
    def device(self) -> torch.device:
        return next(self.student.parameters()).device

    @property
    def tokenizer(self):
        return self.processor.tokenizer


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def _looks_local(name: str) -> bool:
    """A path the user meant as a folder; a Hub id is exactly 'owner/name' (checked by the caller)."""
    return name.startswith((".", "/", "~"))


def _check_source(name: str, trust_remote_code: bool = False) -> None:
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PairError(f"{name} is a file, not a model folder (expected a folder with config.json)")
        if not (path / "config.json").is_file():
            raise PairError(f"{name} has no config.json: it is not a saved model folder")
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles and not any(path.glob("*.safetensors")):
            raise PairError(
                f"{name} has weights only as pickle files ({', '.join(pickles[:3])}); vlod loads safetensors only, "
                "since unpickling a file can run code. Convert it to safetensors first (save_pretrained does)."
            )
        if not trust_remote_code:
            _check_no_custom_code(name, path)
        return
    if _looks_local(name) or name.count("/") != 1:
        raise PairError(f"{name}: no such folder (and not a Hub id of the form 'owner/name')")
    _check_hub_reachable(name)


HUB_OFFLINE_HINT = "Without a network, download the model elsewhere and pass its local folder instead."


def _check_hub_reachable(name: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after minutes of client retries, when the Hub cannot be reached at all."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return  # transformers then looks in the local cache only, and fails fast if it is not there
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError:
        raise PairError(f"{name}: the Hugging Face Hub is unreachable. {HUB_OFFLINE_HINT}") from None


def _remote_code_error(name: str) -> PairError:
    return PairError(
        f"{name} needs custom code from its repository. Tick 'trust remote code' (CLI: "
        f"--trust-remote-code) only if you trust its author."
    )


def _check_no_custom_code(name: str, path: Path) -> None:
    """A folder whose model type transformers does not know, but whose config points at its own code."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise PairError(f"{name}: config.json is not readable JSON ({error})") from None
    if not isinstance(config, dict):
        raise PairError(f"{name}: config.json is not a JSON object")
    if config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING:
        raise _remote_code_error(name)


def _first_line(text: str, fallback: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), fallback)


def _explain_load_error(name: str, error: Exception, what: str) -> PairError:
    text = str(error)
    first = _first_line(text, type(error).__name__)
    if "trust_remote_code" in text:
        return _remote_code_error(name)
    if needs_torchvision(error):
        return PairError(f"{name}: its {what} needs torchvision (pip install torchvision)")
    if "Unrecognized configuration class" in text:
        return PairError(f"{name} is not a vision-language model ({what} failed: {first})")
    if isinstance(error, OSError) and not Path(name).expanduser().exists():
        return PairError(
            f"{name}: the Hugging Face Hub is unreachable or the id is unknown ({first}). {HUB_OFFLINE_HINT}"
        )
    return PairError(f"{name}: could not load the {what}: {first}")


def load_model(name: str, *, dtype: torch.dtype, device: torch.device, trust_remote_code: bool = False):
    """One VLM and its processor from a folder or Hub id (safetensors only)."""
    from transformers import AutoModelForImageTextToText

    _check_source(name, trust_remote_code)
    try:
        processor = load_processor(name, trust_remote_code=trust_remote_code)
    except Exception as error:  # noqa: BLE001 - every failure becomes one clear message
        raise _explain_load_error(name, error, "processor") from error
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise PairError(f"{name} is not a vision-language model: its processor has no image processor")
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except Exception as error:  # noqa: BLE001
        raise _explain_load_error(name, error, "model") from error
    return model.to(device), processor


# What the compatibility check renders with both chat templates: with and without an image, and a full turn.
PROBE_QUESTION = "what color is the circle ?"


def probe_conversations() -> dict[str, tuple[list[dict], bool]]:
    """Name -> (messages, add_generation_prompt); fresh lists each call (templates get them to render)."""
    return {
        "a question with an image": (
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROBE_QUESTION}]}],
            True,
        ),
        "a question without an image": (
            [{"role": "user", "content": [{"type": "text", "text": PROBE_QUESTION}]}],
            True,
        ),
        "a question and its answer": (
            [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROBE_QUESTION}]},
                {"role": "assistant", "content": [{"type": "text", "text": "it is red"}]},
            ],
            False,
        ),
    }


SPECIAL_ROLES = ("bos_token", "eos_token", "pad_token", "unk_token")


def _render(processor, role: str, messages: list[dict], add_generation_prompt: bool) -> str:
    try:
        return processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    except Exception as error:  # noqa: BLE001 - a template that cannot render is a user-fixable pair problem
        if "does not have a chat template" in str(error):
            raise PairError(f"the {role} has no chat template; vlod builds every prompt with it") from None
        first = _first_line(str(error), type(error).__name__)
        raise PairError(f"the {role}'s chat template cannot render a chat message ({first})") from None


def _named_special_tokens(tokenizer) -> dict[str, str]:
    """bos/eos/pad/unk and a family's named tokens (Gemma 3's boi_token, ...) by role."""
    named = {role: getattr(tokenizer, role, None) for role in SPECIAL_ROLES}
    named.update(getattr(tokenizer, "model_specific_special_tokens", None) or {})
    return {role: str(token) for role, token in named.items() if token is not None}


def tokenizer_differences(teacher_tokenizer, student_tokenizer) -> list[str]:
    """What differs between two tokenizers: ids, vocabulary sizes, special tokens (empty: the same)."""
    differences = []
    tokens = [{i: t for t, i in tok.get_vocab().items()} for tok in (teacher_tokenizer, student_tokenizer)]
    sizes = [len(t) for t in tokens]
    if sizes[0] != sizes[1]:
        longer = "teacher" if sizes[0] > sizes[1] else "student"
        extra = [tokens[0 if longer == "teacher" else 1].get(i) for i in range(min(sizes), max(sizes))]
        differences.append(f"vocab sizes {sizes[0]} and {sizes[1]} (only the {longer} has {extra[:3]})")
    for i in range(min(sizes)):
        if tokens[0].get(i) != tokens[1].get(i):
            differences.append(f"id {i} is {tokens[0].get(i)!r} in the teacher and {tokens[1].get(i)!r} in the student")
    named = [_named_special_tokens(tok) for tok in (teacher_tokenizer, student_tokenizer)]
    for role in sorted(set(named[0]) | set(named[1])):
        if named[0].get(role) != named[1].get(role):
            differences.append(
                f"{role} is {named[0].get(role)!r} in the teacher and {named[1].get(role)!r} in the student"
            )
    special = [set(map(str, tok.all_special_tokens)) for tok in (teacher_tokenizer, student_tokenizer)]
    for role, only in (("teacher", special[0] - special[1]), ("student", special[1] - special[0])):
        if only:
            differences.append(f"only the {role} treats {sorted(only)} as special")
    return differences


def _first_difference(a: str, b: str, context: int = 30) -> tuple[str, str]:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - context)
    return a[start : at + context], b[start : at + context]


def check_chat_templates(teacher_processor, student_processor) -> None:
    """Both templates render the probe conversations to the same text, and each gives the image a place."""
    probes = probe_conversations()
    for what, (messages, generation_prompt) in probes.items():
        teacher_text = _render(teacher_processor, "teacher", messages, generation_prompt)
        student_text = _render(student_processor, "student", messages, generation_prompt)
        if teacher_text != student_text:
            t_part, s_part = _first_difference(teacher_text, student_text)
            raise PairError(
                f"the teacher's and student's chat templates render the same prompt differently ({what}): "
                f"teacher ...{t_part!r}... vs student ...{s_part!r}..."
            )
    for role, processor in (("teacher", teacher_processor), ("student", student_processor)):
        with_image, without_image = (
            _render(processor, role, probes[key][0], True)
            for key in ("a question with an image", "a question without an image")
        )
        if with_image == without_image:
            raise PairError(
                f"the {role}'s chat template has no image slot: a message with an image renders exactly as one "
                "without, so the image would never reach the model"
            )


def check_compatible(teacher, teacher_processor, student, student_processor) -> tuple[int, list[str]]:
    """Raise `PairError` unless the two can be distilled; returns the shared vocab size and notes."""
    notes = []
    t_tok, s_tok = teacher_processor.tokenizer, student_processor.tokenizer
    differences = tokenizer_differences(t_tok, s_tok)
    if differences:
        more = f" (and {len(differences) - 3} more differences)" if len(differences) > 3 else ""
        raise PairError(
            f"teacher and student use different tokenizers: {'; '.join(differences[:3])}{more}. "
            "cross-tokenizer distillation is not supported"
        )
    check_chat_templates(teacher_processor, student_processor)
    t_out = teacher.get_output_embeddings().weight.shape[0]
    s_out = student.get_output_embeddings().weight.shape[0]
    vocab = len(s_tok)
    if min(t_out, s_out) < vocab:
        raise PairError(f"output layers ({t_out}, {s_out}) are smaller than the tokenizer ({vocab})")
    if t_out != s_out:
        notes.append(f"output layers differ in size ({t_out} vs {s_out}); compared over the {vocab} shared tokens")
    return vocab, notes


def probe_image() -> Image.Image:
    """A non-square image with structure, so resizing, cropping and normalisation all show."""
    return Image.merge(
        "RGB", [Image.linear_gradient("L").resize((64, 48)), Image.radial_gradient("L").resize((64, 48)),
                Image.new("L", (64, 48), 90)]
    )  # fmt: skip


def image_encoding_differences(teacher_processor, student_processor) -> list[str]:
    """How the two processors' encodings of one image and prompt differ (empty: they encode it alike)."""
    messages = probe_conversations()["a question with an image"][0]
    encoded = []
    for processor in (teacher_processor, student_processor):
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        encoded.append(
            processor(text=[text], images=[probe_image()], return_tensors="pt", padding=True, padding_side="right")
        )
    teacher_out, student_out = encoded
    differences = [f"only the teacher's gives {key}" for key in sorted(teacher_out.keys() - student_out.keys())]
    differences += [f"only the student's gives {key}" for key in sorted(student_out.keys() - teacher_out.keys())]
    for key in sorted(teacher_out.keys() & student_out.keys()):
        a, b = teacher_out[key], student_out[key]
        if not (torch.is_tensor(a) and torch.is_tensor(b)):
            continue
        if a.shape != b.shape:
            differences.append(f"{key} of shape {tuple(a.shape)} vs {tuple(b.shape)}")
        elif not torch.equal(a, b):
            differences.append(f"different {key}")
    return differences


def load_pair(spec: PairSpec, folders: tuple[str, str] | None = None) -> ModelPair:
    """Load and check a pair; the teacher comes back frozen in eval mode.

    The models come from `folders` (teacher, student) when given, else from the spec's folders or Hub ids. The
    spec name "toy" is located by the entry point that offers it (`vlod_core.toy.folders`), not here.
    """
    teacher_name, student_name = folders or (spec.teacher, spec.student)
    if TOY in (teacher_name, student_name):
        raise PairError(
            f"'{TOY}' names the embedded toy pair, which the caller locates: "
            "load_pair(spec, vlod_core.toy.folders(spec)) (the CLI and the app do this)"
        )
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    kwargs = dict(dtype=dtype, device=device, trust_remote_code=spec.trust_remote_code)
    teacher, teacher_processor = load_model(teacher_name, **kwargs)
    student, student_processor = load_model(student_name, **kwargs)
    vocab, notes = check_compatible(teacher, teacher_processor, student, student_processor)
    for role, processor in (("teacher", teacher_processor), ("student", student_processor)):
        if is_image_only(processor):
            notes.append(f"the {role}'s {type(processor).__name__} was built for images only (no torchvision)")
    encoding_differences = image_encoding_differences(teacher_processor, student_processor)
    if encoding_differences:
        notes.append(
            f"teacher and student encode images differently ({'; '.join(encoding_differences)}): "
            "each model gets its prompt from its own processor"
        )
    teacher.eval().requires_grad_(False)
    student.eval()
    logger.info("loaded pair %s <- %s on %s (%s)", student_name, teacher_name, device, dtype)
    return ModelPair(
        teacher,
        student,
        student_processor,
        spec,
        vocab,
        notes,
        teacher_processor=teacher_processor if encoding_differences else None,
    )
