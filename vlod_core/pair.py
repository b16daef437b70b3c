"""Load a teacher/student pair of VLMs through transformers' Auto classes and check they can be distilled.

A pair is two `AutoModelForImageTextToText` checkpoints (a local folder or a Hub id) plus the student's
`AutoProcessor`. Nothing here knows a model family: the toy LLaVA pair, SmolVLM or Qwen-VL pairs all go
the same way. Compatibility is checked before anything runs (METHOD.md: one shared vocabulary; the two
chat templates must render a prompt to the same ids), and every failure is a `PairError` whose message
says what to do. `trust_remote_code` is off unless the caller turns it on; weights load as safetensors.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

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
    if "requires the Torchvision library" in text or "requires the torchvision" in text.lower():
        return PairError(f"{name}: its processor needs torchvision (pip install torchvision)")
    if "Unrecognized configuration class" in text:
        return PairError(f"{name} is not a vision-language model ({what} failed: {first})")
    if isinstance(error, OSError) and not Path(name).expanduser().exists():
        return PairError(
            f"{name}: the Hugging Face Hub is unreachable or the id is unknown ({first}). {HUB_OFFLINE_HINT}"
        )
    return PairError(f"{name}: could not load the {what}: {first}")


def load_model(name: str, *, dtype: torch.dtype, device: torch.device, trust_remote_code: bool = False):
    """One VLM and its processor from a folder or Hub id (safetensors only)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    _check_source(name, trust_remote_code)
    try:
        processor = AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
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


def _render_probe(processor) -> list[int]:
    messages = [{"role": "user", "content": [{"type": "text", "text": "what color is the circle ?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # Padded right like every tokenizer call in vlod_core: the settings live on the shared backend (sampling.py).
    return processor.tokenizer(text, add_special_tokens=False, padding=True, padding_side="right")["input_ids"]


def check_compatible(teacher, teacher_processor, student, student_processor) -> tuple[int, list[str]]:
    """Raise `PairError` unless the two can be distilled; returns the shared vocab size and notes."""
    notes = []
    t_tok, s_tok = teacher_processor.tokenizer, student_processor.tokenizer
    t_vocab, s_vocab = t_tok.get_vocab(), s_tok.get_vocab()
    if t_vocab != s_vocab:
        raise PairError(
            f"teacher and student use different tokenizers (vocab sizes {len(t_vocab)} and {len(s_vocab)}); "
            "cross-tokenizer distillation is not supported"
        )
    t_ids, s_ids = _render_probe(teacher_processor), _render_probe(student_processor)
    if t_ids != s_ids:
        raise PairError(
            "the teacher's and student's chat templates render the same prompt differently: "
            f"teacher {t_tok.decode(t_ids)!r} vs student {s_tok.decode(s_ids)!r}"
        )
    t_out = teacher.get_output_embeddings().weight.shape[0]
    s_out = student.get_output_embeddings().weight.shape[0]
    vocab = len(s_tok)
    if min(t_out, s_out) < vocab:
        raise PairError(f"output layers ({t_out}, {s_out}) are smaller than the tokenizer ({vocab})")
    if t_out != s_out:
        notes.append(f"output layers differ in size ({t_out} vs {s_out}); compared over the {vocab} shared tokens")
    return vocab, notes


def _toy_paths(spec: PairSpec) -> tuple[str, str]:
    from vlod_core.toy.build import ensure_toy_pair

    root = ensure_toy_pair()
    teacher = str(root / "teacher") if spec.teacher == TOY else spec.teacher
    student = str(root / spec.student_variant) if spec.student == TOY else spec.student
    return teacher, student


def load_pair(spec: PairSpec = PairSpec()) -> ModelPair:
    """Load and check a pair; the teacher comes back frozen in eval mode."""
    teacher_name, student_name = (
        _toy_paths(spec) if TOY in (spec.teacher, spec.student) else (spec.teacher, spec.student)
    )
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    kwargs = dict(dtype=dtype, device=device, trust_remote_code=spec.trust_remote_code)
    teacher, teacher_processor = load_model(teacher_name, **kwargs)
    student, student_processor = load_model(student_name, **kwargs)
    vocab, notes = check_compatible(teacher, teacher_processor, student, student_processor)
    teacher.eval().requires_grad_(False)
    student.eval()
    logger.info("loaded pair %s <- %s on %s (%s)", student_name, teacher_name, device, dtype)
    return ModelPair(teacher, student, student_processor, spec, vocab, notes)
