"""Real sizes: one distillation step of the real architectures (random weights), standard vs VGS, and inspect.

The models are built from the published configs (`vlod_core.presets.config_of`) with random weights, saved
in their stock Hub layout (config.json, generation_config.json, model.safetensors, tokenizer files, chat
template, processor files) in a temporary folder, and loaded with `vlod_core.pair.load_pair`, the path a
user's download takes. The tokenizer is a word-level one with the real vocabulary's number of ids, whose
special tokens sit at the real ids (SmolVLM: `<image>` 49190, `<end_of_utterance>` 49279, ...; Qwen3-VL:
`<|image_pad|>` 151655, ...); the other ids are the toy world's words and filler. So the embedding tables,
output layers and every (B, T, V) log-prob tensor have the real sizes.

Pairs: `smolvlm` (SmolVLM-500M-Instruct teacher, SmolVLM-256M-Instruct student; the CPU rows) and `qwen3`
(Qwen3-VL-8B teacher, Qwen3-VL-2B student, bf16 on CUDA: the GPU rows, which also run TRL's
`DistillationTrainer` on the same pair, batch and completion length). SmolVLM's processor resizes every
image to N x 512 px on its longest side and cuts it into 512-px tiles plus one global tile, 64 image tokens
each: its default N = 4 gives 17 tiles (1088 tokens) for a square image. `--tiles` sets N; the default run
uses 1 (one tile, 64 tokens), since at N = 4 a step of batch 2 needs minutes and ~17 GiB on this CPU.

What is measured, in a fresh subprocess, variants interleaved round-robin (each thread count in turn):

- `standard`, `vgs_fixed` (rule vgs, η = 0.41), `vgs_auto` (η measured from the gradients): each round runs
  `vlod_core.distill.distill` for 2 steps per variant on fixed in-memory rows and times the second (the
  first allocates AdamW's state, warms the kernels up and, for standard, is a step that logs the image-free
  terms). A step is timed from `distill`'s `should_stop` hook (called at the top of each step) to its
  `callback`, in wall and in CPU seconds (the steadier measure on a shared machine), and the sampling inside
  it by wrapping `vlod_core.engine.sample`. Random weights never stop by themselves, so both models'
  `generation_config.min_new_tokens` is set to the step's `max_new_tokens` (EOS held off): every sample is
  exactly 32 tokens long, and the output shows the measured count. `--budget` stops starting new rounds.
- `inspect`: the app's one question (`vlod_core.inspection.inspect` with the app's defaults: a sampled
  answer and four greedy ones, 8 tokens each here, then the four scoring passes), batch 1.
- peak memory of each variant (CPU: the resident set's high-water mark, reset before each `distill` call;
  CUDA: max allocated), against `vlod_core.memory.estimate_training_memory` for the same batch and lengths.

    python bench/real_sizes.py                          # SmolVLM on this CPU, one thread, under 10 minutes
    python bench/real_sizes.py --tiles 4 --no-train     # the processor's default size: shapes and inspect
    python bench/real_sizes.py --tiny --quick           # smoke run of the same code path, seconds
    python bench/real_sizes.py --pair qwen3 --device cuda        # the GPU rows, with TRL
    python bench/real_sizes.py --pair qwen3 --device cpu --tiny --quick --trl   # the GPU path, tiny, on CPU
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

FIXED_ETA = 0.41
VARIANTS = ("standard", "vgs_fixed", "vgs_auto")
STEPS_PER_CALL = 2  # each distill call: an untimed first step, then the timed one
QUESTIONS = ("what color is the circle ?", "how many shapes are there ?", "where is the square ?", "what is this ?")

# Special tokens at the ids the real tokenizers give them; every other id is a toy word or filler.
SMOLVLM_VOCAB = 49280  # ids 0..49279: <end_of_utterance> is the last
SMOLVLM_SPECIALS = {
    "<|endoftext|>": 0,
    "<|im_start|>": 1,
    "<|im_end|>": 2,
    "<global-img>": 49152,
    **{f"<row_{i}_col_{j}>": 49153 + 6 * (i - 1) + (j - 1) for i in range(1, 7) for j in range(1, 7)},
    "<fake_token_around_image>": 49189,
    "<image>": 49190,
    "<end_of_utterance>": 49279,
}
QWEN_VOCAB = 151669  # the tokenizer's ids; the embedding tables have 151936 rows (config vocab_size)
QWEN_SPECIALS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
# Where the ids and processor settings come from (search index of Hub pages and copies, 2026-12): SmolVLM's
# special-token ids above (copies of its tokenizer's anchors); its ids 3-16 and 49191-49278 (other added
# tokens in the real tokenizer) are plain filler here. SmolVLM's preprocessor_config.json (a copy):
# Idefics3ImageProcessor, do_image_splitting, size longest_edge 2048, max_image_size 512, resample 1;
# image_seq_len 64 (presets.SOURCES). Qwen3-VL: image token 151655 as presets.SOURCES; the other ids, the
# 151669-id tokenizer and the preprocessor (patch 16, merge 2, temporal patch 2, 65536 to 16777216 pixels,
# mean/std 0.5) are from memory, not seen.


@dataclass(frozen=True)
class BenchPair:
    key: str
    teacher: str  # the preset model ids whose published configs are built
    student: str
    device: str  # where it runs by default


PAIRS = {
    "smolvlm": BenchPair(
        "smolvlm", "HuggingFaceTB/SmolVLM-500M-Instruct", "HuggingFaceTB/SmolVLM-256M-Instruct", "cpu"
    ),
    "qwen3": BenchPair("qwen3", "Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-2B-Instruct", "cuda"),
}


# --- building the pair in its stock layout ----------------------------------------------------------------------


def padded_tokenizer(size: int, specials: dict[str, int], template: str, *, eos: str, pad: str, bos: str | None):
    """A word-level tokenizer with exactly `size` ids: `specials` at their ids, the toy words, then filler."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from vlod_core.testing.families import TEMPLATE_WORDS
    from vlod_core.toy.tokenizer import build_tokenizer

    toy = build_tokenizer(extra_words=TEMPLATE_WORDS)
    words = sorted(set(toy.get_vocab()) - set(toy.all_special_tokens))
    vocab = dict(specials)
    taken = set(specials.values())
    free = (i for i in range(size) if i not in taken)
    for word in words:
        vocab[word] = next(free)
    for i in free:
        vocab[f"tok{i}"] = i
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=pad))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=pad,
        extra_special_tokens=[t for t in specials if t not in (bos, eos, pad)],
        chat_template=template,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.padding_side = "right"
    assert len(tokenizer) == size, (len(tokenizer), size)
    return tokenizer


def tiny_values(values: dict, teacher: bool) -> dict:
    """The published values with the depth and widths shrunk (same classes, tokenizer and vocabulary)."""
    from vlod_core.testing.families import _mrope_section

    hidden, layers, heads = (64, 2, 4) if teacher else (32, 1, 2)
    text = values["text_config"]
    text.update(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers)
    text.update(num_attention_heads=heads, num_key_value_heads=heads // 2, head_dim=16)
    vision = values["vision_config"]
    if values["model_type"] == "idefics3":  # 64-px tiles of 8-px patches: 64 patches, 4 image tokens per tile
        vision.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        vision.update(image_size=64, patch_size=8)
    else:  # qwen3_vl
        text["rope_parameters"] = dict(text["rope_parameters"], mrope_section=_mrope_section(16))
        vision.update(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden)
        vision.update(deepstack_visual_indexes=[0])
    return values


def model_config(model_id: str, tiny: bool, teacher: bool):
    from transformers import AutoConfig

    from vlod_core.presets import config_of, published_configs

    if not tiny:
        return config_of(model_id)
    values = tiny_values(published_configs()[model_id], teacher)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def build_model(model_class, config, tokenizer, dtype: torch.dtype, device: str):
    """Random weights (the model's own init), directly in `dtype` on `device`."""
    with torch.device(device):
        model = model_class._from_config(config, dtype=dtype)
    generation = model.generation_config
    generation.pad_token_id, generation.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    generation.bos_token_id = tokenizer.bos_token_id
    return model


def save_smolvlm(model_id: str, path: Path, teacher: bool, opts) -> None:
    """Idefics3 classes and the stock processor (SmolVLM-256M/500M-Instruct's), saved with save_pretrained."""
    from transformers import Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    from vlod_core.testing.families import _smolvlm_template

    template = _smolvlm_template()
    tokenizer = padded_tokenizer(
        SMOLVLM_VOCAB, SMOLVLM_SPECIALS, template, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|im_end|>"
    )
    config = model_config(model_id, opts.tiny, teacher)
    tile, patch = config.vision_config.image_size, config.vision_config.patch_size
    image_processor = Idefics3ImageProcessorPil(
        do_convert_rgb=True, do_image_splitting=True, do_normalize=True, do_pad=True, do_rescale=True,
        do_resize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3, max_image_size={"longest_edge": tile},
        resample=1, rescale_factor=1 / 255, size={"longest_edge": opts.tiles * tile},
    )  # fmt: skip
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(tile // patch) ** 2 // config.scale_factor**2,
        chat_template=template,
    )
    model = build_model(Idefics3ForConditionalGeneration, config, tokenizer, opts.torch_dtype, opts.device)
    model.save_pretrained(path)
    processor.save_pretrained(path)


def save_qwen3_vl(model_id: str, path: Path, teacher: bool, opts) -> None:
    """Qwen3-VL classes; the processor written file by file as the Hub repositories have it."""
    from transformers import Qwen3VLForConditionalGeneration

    from vlod_core.testing.families import QWEN3_VL_TEMPLATE, _save_processor_files

    tokenizer = padded_tokenizer(
        QWEN_VOCAB, QWEN_SPECIALS, QWEN3_VL_TEMPLATE, bos=None, eos="<|im_end|>", pad="<|endoftext|>"
    )
    config = model_config(model_id, opts.tiny, teacher)
    model = build_model(Qwen3VLForConditionalGeneration, config, tokenizer, opts.torch_dtype, opts.device)
    model.save_pretrained(path)
    del model
    pixels = {"longest_edge": 64 * 64, "shortest_edge": 64 * 64} if opts.tiny else {
        "longest_edge": 16777216, "shortest_edge": 65536}  # fmt: skip
    common = dict(
        image_mean=[0.5] * 3, image_std=[0.5] * 3, merge_size=2, patch_size=16, temporal_patch_size=2,
        processor_class="Qwen3VLProcessor",
    )  # fmt: skip
    files = {
        "preprocessor_config.json": dict(common, size=pixels, image_processor_type="Qwen2VLImageProcessorFast"),
        "video_preprocessor_config.json": dict(
            common,
            size={"longest_edge": 25165824, "shortest_edge": 4096},
            fps=2,
            do_sample_frames=True,
            video_processor_type="Qwen3VLVideoProcessor",
        ),
    }
    _save_processor_files(path, tokenizer, files, QWEN3_VL_TEMPLATE)


SAVERS = {"smolvlm": save_smolvlm, "qwen3": save_qwen3_vl}


def bench_image(side: int):
    """A square picture with structure (the processors resize it; SmolVLM's to its N x 512 tiles)."""
    from PIL import Image

    g = Image.linear_gradient("L").resize((side, side))
    r = Image.radial_gradient("L").resize((side, side))
    return Image.merge("RGB", [g, r, g.transpose(Image.Transpose.ROTATE_90)])


# --- the measurements (run in a fresh subprocess) ------------------------------------------------------------------


def median(values):
    return statistics.median(values) if values else float("nan")


def rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak memory of one piece of work: CUDA's max allocated, or the resident set's high-water mark.

    On Linux the high-water mark is reset before each piece (`/proc/self/clear_refs`, after handing freed heap
    back with `malloc_trim`), so each variant's peak is its own, not an earlier variant's; `ru_maxrss` then
    reads it. Where that reset is refused, the peak is the process's so far (said in the output).
    """

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.resettable = self.cuda or self._reset_rss()

    @staticmethod
    def _reset_rss() -> bool:
        import ctypes
        import gc

        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif self.resettable:
            self._reset_rss()

    def peak(self) -> int:
        if self.cuda:
            return torch.cuda.max_memory_allocated()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def min_new_tokens(pair, count: int):
    """Hold EOS off for `count` tokens in every generate call of both models (random weights never stop)."""
    models = (pair.teacher, pair.student)
    before = [m.generation_config.min_new_tokens for m in models]
    for model in models:
        model.generation_config.min_new_tokens = count
    try:
        yield
    finally:
        for model, value in zip(models, before):
            model.generation_config.min_new_tokens = value


class StepClock:
    """Times each step of `distill` (its `should_stop` hook to its callback) and the sampling inside it.

    Wall time, and the process's CPU time: with one thread and other jobs on the machine, CPU time is the
    steadier measure of the work (it leaves out the time the process waited for a core).
    """

    def __init__(self, device: str):
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.start = self.cpu_start = self.sampling = self.sampling_cpu = 0.0
        self.steps: list[dict] = []

    def should_stop(self) -> bool:
        self.sync()
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.sampling = self.sampling_cpu = 0.0
        return False

    def callback(self, record) -> None:
        self.sync()
        self.steps.append(
            dict(
                seconds=time.perf_counter() - self.start,
                cpu=time.process_time() - self.cpu_start,
                sampling=self.sampling,
                sampling_cpu=self.sampling_cpu,
                tokens=record.response_tokens,
                decomposed=not math.isnan(record.lang),  # the image-free passes ran (else ℓLang is NaN)
            )
        )

    @contextlib.contextmanager
    def timing_sampling(self):
        import vlod_core.engine as engine

        original = engine.sample

        def timed(*args, **kwargs):
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.sync()
                self.sampling += time.perf_counter() - started
                self.sampling_cpu += time.process_time() - cpu_started

        engine.sample = timed
        try:
            yield
        finally:
            engine.sample = original


def distill_config(variant: str, batch: int, new_tokens: int, seed: int):
    from vlod_core.distill import DistillConfig
    from vlod_core.sampling import SamplingConfig
    from vlod_core.steering import SteeringConfig

    steering = {
        "standard": SteeringConfig(rule="standard"),
        "vgs_fixed": SteeringConfig(rule="vgs", eta=FIXED_ETA),
        "vgs_auto": SteeringConfig(rule="vgs", eta="auto"),
    }[variant]
    return DistillConfig(
        steps=STEPS_PER_CALL,
        batch=batch,
        seed=seed,
        steering=steering,
        sampling=SamplingConfig(max_new_tokens=new_tokens),
        eval_examples=1,
        answer_examples=0,
    )


def step_flops(pair, data, variant: str, batch: int, new_tokens: int) -> int:
    """FLOPs of the second step of a `distill` call (matmuls, convolutions, attention; forward and backward).

    Counted by `torch.utils.flop_counter`, entered and left in the step's hooks: unlike a time, the same on
    any machine, but blind to memory-bound work (norms, copies, the decoder reading its weights per token).
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    from vlod_core.distill import distill

    aten = torch.ops.aten
    mapping = {}  # the CPU's fused attention kernels, which the counter does not know
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = lambda q, k, v, *a, out_shape=None, **kw: (
            sdpa_flop_count(q, k, v)
        )
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda g, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v)
        )
    counter, done = FlopCounterMode(display=False, custom_mapping=mapping), []

    def should_stop() -> bool:
        if len(done) == STEPS_PER_CALL - 1:
            counter.__enter__()
        return False

    def callback(record) -> None:
        if len(done) == STEPS_PER_CALL - 1:
            counter.__exit__(None, None, None)
        done.append(record)

    config = distill_config(variant, batch, new_tokens, seed=0)
    distill(pair, config, data, callback=callback, should_stop=should_stop, evaluate_model=False)
    return counter.get_total_flops()


def vision_activation_bytes(pair, image) -> int:
    """Bytes the student's vision tower keeps for the backward pass of one image (its tiles), measured.

    The image features are computed with gradients, as in a training step, under a saved-tensors hook that
    adds up the storages autograd keeps (parameters left out). `vlod_core.memory` does not count these.
    """
    from vlod_core.engine import encode

    encoded = encode(pair, [image], [QUESTIONS[0]], contexts=("image",)).encoded[("student", "image")]
    text = {"input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"}
    weights = {p.untyped_storage().data_ptr() for p in pair.student.parameters()}
    saved: dict[int, int] = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        pair.student.get_image_features(**{k: v for k, v in encoded.items() if k not in text})
    return sum(saved.values())


def prompt_shapes(pair, image, batch: int) -> dict:
    """Image tokens per image and prompt lengths (image and image-free context) of a batch, as encoded."""
    from vlod_core.engine import encode

    prompts = encode(pair, [image] * batch, [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)])
    with_image = prompts.encoded[("student", "image")]
    ablated = prompts.encoded[("student", "ablated")]
    image_token = pair.student.config.image_token_id
    return dict(
        image_tokens=int((with_image["input_ids"][0] == image_token).sum()),
        prompt=int(with_image["attention_mask"].sum(-1).max()),
        prompt_ablated=int(ablated["attention_mask"].sum(-1).max()),
        pixel_values=list(with_image["pixel_values"].shape) if "pixel_values" in with_image else None,
    )


def run_trl(pair, spec: dict, image, memory: PeakMemory) -> dict:
    """TRL's DistillationTrainer on the same pair, batch and completion length: seconds per step after one."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    from vlod_core.sampling import structural_token_ids

    batch, new_tokens, warm = spec["batch"], spec["new_tokens"], 1
    steps = warm + spec["trl_steps"]
    args = DistillationConfig(
        output_dir=tempfile.mkdtemp(prefix="vlod_real_trl_"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        max_grad_norm=1.0,
        bf16=spec["dtype"] == "bfloat16",
        max_completion_length=new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=1.0,  # reverse KL, as ours
        generation_kwargs={"suppress_tokens": structural_token_ids(pair.tokenizer), "min_new_tokens": new_tokens},
        use_cpu=not spec["device"].startswith("cuda"),
        report_to=[],
        logging_steps=10_000,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    rows = [{"prompt": [{"role": "user", "content": q}], "image": image} for q in QUESTIONS] * (steps * batch)
    stamps, lengths = [], []
    sync = torch.cuda.synchronize if spec["device"].startswith("cuda") else (lambda: None)

    class Clock(TrainerCallback):
        trainer = None

        def on_step_begin(self, args, state, control, **kwargs):
            if not stamps:
                sync()
                stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            stamps.append(time.perf_counter())
            values = self.trainer._metrics["train"].get("completions/mean_length", [])
            if values:
                lengths.append(values[-1])

    clock = Clock()
    trainer = DistillationTrainer(
        model=copy.deepcopy(pair.student),
        teacher_model=pair.teacher,  # the last user of the pair: no copy of the big teacher
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=copy.deepcopy(pair.processor),
        callbacks=[clock],
    )
    clock.trainer = trainer
    trainer.remove_callback(PrinterCallback)
    memory.reset()
    try:
        trainer.train()
    finally:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][warm:]
    return {"seconds": gaps, "mean_length": lengths[warm:], "peak": memory.peak()}


def measure(spec: dict) -> dict:
    """Everything timed, in this (fresh) process; returns plain data for the parent to print."""
    threads = spec["threads"]
    torch.set_num_threads(threads[0])
    logging.disable(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from vlod_core.data import Row, RowSampler, TrainingData
    from vlod_core.distill import DistillConfig, distill
    from vlod_core.inspection import inspect
    from vlod_core.memory import estimate_training_memory
    from vlod_core.pair import PairSpec, load_pair
    from vlod_core.sampling import GREEDY, SamplingConfig

    baseline = rss_now()  # Python, torch, transformers and vlod imported; nothing loaded
    load_start = time.perf_counter()
    pair = load_pair(
        PairSpec(teacher=spec["teacher"], student=spec["student"], dtype=spec["dtype"], device=spec["device"])
    )
    out = {"load_seconds": time.perf_counter() - load_start, "baseline": baseline, "notes": pair.notes}
    out["params"] = {role: sum(p.numel() for p in getattr(pair, role).parameters()) for role in ("teacher", "student")}
    out["decompose_every"] = DistillConfig().decompose_every
    out["loadavg_start"] = os.getloadavg()
    image = bench_image(spec["image_side"])
    batch, new_tokens = spec["batch"], spec["new_tokens"]
    out["shapes"] = prompt_shapes(pair, image, batch)
    rows = [Row(image, q) for q in QUESTIONS]
    data = TrainingData(RowSampler(rows), rows)

    memory = PeakMemory(spec["device"])
    out["peak_resettable"] = memory.resettable
    clock = StepClock(spec["device"])
    steps: dict[str, list[dict]] = {}
    peaks: dict[str, int] = {}
    started = time.perf_counter()
    out["rounds"], last = 0, 0.0
    with clock.timing_sampling(), min_new_tokens(pair, new_tokens):
        for round_ in range(spec["rounds"] if spec["train"] else 0):
            if round_ and time.perf_counter() - started + last > spec["budget"]:
                break  # the next round would likely end past the budget
            round_start = time.perf_counter()
            for t_index, count in enumerate(threads):
                torch.set_num_threads(count)
                shift = (round_ + t_index) % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:  # rotated: no variant always goes first
                    clock.steps = []
                    memory.reset()
                    config = distill_config(variant, batch, new_tokens, seed=round_)
                    distill(pair, config, data, callback=clock.callback, should_stop=clock.should_stop,
                            evaluate_model=False)  # fmt: skip
                    peaks[variant] = max(peaks.get(variant, 0), memory.peak())
                    for index, step in enumerate(clock.steps):
                        steps.setdefault(f"{variant}@{count}@{index}", []).append(step)
            last, out["rounds"] = time.perf_counter() - round_start, round_ + 1
            print(
                f"round {round_ + 1}/{spec['rounds']} done after {time.perf_counter() - started:.0f} s", file=sys.stderr
            )
    out["steps"], out["peaks"] = steps, peaks
    if spec["flops"] and spec["train"]:
        torch.set_num_threads(threads[0])
        with min_new_tokens(pair, new_tokens):
            out["flops"] = {v: step_flops(pair, data, v, batch, new_tokens) for v in VARIANTS}
    dtype = getattr(torch, spec["dtype"])
    lengths = (out["shapes"]["prompt"], new_tokens)
    pixels = out["shapes"].get("pixel_values")  # SmolVLM: [batch, tiles, 3, H, W]
    tiles = pixels[1] if pixels and len(pixels) == 5 else 1
    estimate = estimate_training_memory(
        pair.teacher.config, pair.student.config, dtype, batch, lengths, image_tiles=tiles
    )
    out["estimate"] = estimate.to_dict() | {"describe": estimate.describe()}

    # The app's inspect with its defaults: a sampled answer and four greedy ones, each held to full length.
    inspect_tokens = min(SamplingConfig().max_new_tokens, GREEDY.max_new_tokens)
    out["inspect_tokens"] = inspect_tokens
    out["inspect"] = {}
    memory.reset()
    with min_new_tokens(pair, inspect_tokens):
        for count in threads:
            torch.set_num_threads(count)
            runs = []
            for _ in range(spec["inspect_runs"]):
                t, cpu = time.perf_counter(), time.process_time()
                inspect(pair, image, QUESTIONS[0])
                runs.append((time.perf_counter() - t, time.process_time() - cpu))
            out["inspect"][str(count)] = runs
    out["inspect_peak"] = memory.peak()
    out["loadavg_end"] = os.getloadavg()
    out["seconds"] = time.perf_counter() - started
    if spec["trl"]:
        torch.set_num_threads(threads[0])
        try:
            out["trl"] = run_trl(pair, spec, image, memory)
        except Exception as error:  # noqa: BLE001 - reported, never a made-up number
            tb = traceback.extract_tb(error.__traceback__)[-1]
            out["trl_error"] = f"{type(error).__name__}: {error} (at {os.path.basename(tb.filename)}:{tb.lineno})"
    out["vision_activations"] = vision_activation_bytes(pair, image)  # last: what it frees may stay resident
    return out


# --- the parent: choose the dtype, build, run the child, print -----------------------------------------------------


def matmul_gflops(dtype: torch.dtype, threads: int) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 2048, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * 1024 * 1024 * 2048 / median(times) / 1e9


def choose_dtype(requested: str, device: str) -> tuple[str, str]:
    """(dtype, why): bf16 on CUDA; on the CPU bf16 where oneDNN supports it and its matmul beats fp32."""
    if requested != "auto":
        return requested, "as asked (--dtype)"
    if device.startswith("cuda"):
        return "bfloat16", "CUDA"
    capability = torch.backends.cpu.get_cpu_capability()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "float32", f"CPU {capability}: no bf16 support in oneDNN"
    fp32, bf16 = matmul_gflops(torch.float32, 1), matmul_gflops(torch.bfloat16, 1)
    speed = f"CPU {capability}, oneDNN bf16 supported; one-thread matmul bf16 {bf16:.0f} vs fp32 {fp32:.0f} GFLOP/s"
    return ("bfloat16", speed) if bf16 > 1.5 * fp32 else ("float32", speed + ": bf16 is not faster")


def fmt_gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def steps_of(out: dict, variant: str, threads: int, index: int) -> list[dict]:
    return out["steps"].get(f"{variant}@{threads}@{index}", [])


def report(args, spec: dict, why: str, build_seconds: float, out: dict) -> None:
    pair, threads, shapes, params = PAIRS[args.pair], spec["threads"], out["shapes"], out["params"]
    cuda = spec["device"].startswith("cuda")
    size = "tiny shapes (--tiny)" if args.tiny else "published configs"
    print(f"pair {pair.key}: teacher {pair.teacher} ({params['teacher']:,} params), student {pair.student} "
          f"({params['student']:,} params); {size}, random weights")  # fmt: skip
    print(f"device {spec['device']}, dtype {spec['dtype']} ({why}); batch {spec['batch']}, {spec['new_tokens']} new "
          f"tokens per sample (EOS held off); built and saved in {build_seconds:.0f} s, load_pair {out['load_seconds']:.0f} s")  # fmt: skip
    tiles = f" (processor longest edge {args.tiles} x 512)" if args.pair == "smolvlm" and not args.tiny else ""
    print(f"image {spec['image_side']}x{spec['image_side']}{tiles} -> pixel_values {shapes['pixel_values']}: "
          f"{shapes['image_tokens']} image tokens per image; prompt {shapes['prompt']} tokens with the image, "
          f"{shapes['prompt_ablated']} without")  # fmt: skip
    for note in out["notes"]:
        print(f"note: {note}")
    start, end = (tuple(round(x, 2) for x in out[k]) for k in ("loadavg_start", "loadavg_end"))
    print(f"load average (1, 5, 15 min): {start} at the start, {end} at the end; {os.cpu_count()} CPUs")
    print()
    timed = STEPS_PER_CALL - 1
    med, cpu = {}, {}
    if out["rounds"]:
        print(f"per step (each distill call runs {STEPS_PER_CALL} steps; the last is timed): median wall and CPU "
              f"seconds [steps], sampling's share of the step (wall / CPU), tokens per sample")  # fmt: skip
        print(f"{'variant':<12}" + "".join(f"{'threads ' + str(t):>50}" for t in threads))
        for variant in VARIANTS:
            row = f"{variant:<12}"
            for t in threads:
                steps = steps_of(out, variant, t, timed)
                med[variant, t] = median([s["seconds"] for s in steps])
                cpu[variant, t] = median([s["cpu"] for s in steps])
                share = median([s["sampling"] / s["seconds"] for s in steps])
                share_cpu = median([s["sampling_cpu"] / s["cpu"] for s in steps])
                tokens = "/".join(f"{x:g}" for x in sorted({s["tokens"] / spec["batch"] for s in steps}))
                row += f"{med[variant, t]:>9.2f} s {cpu[variant, t]:>7.2f} cpu-s [{len(steps)}]"
                row += f" {100 * share:>3.0f}% / {100 * share_cpu:>2.0f}% {tokens:>3} tok"
            print(row)
    if "flops" in out:
        flops = out["flops"]
        print(f"{'FLOPs/step':<12}" + ", ".join(
            f"{v} {flops[v] / 1e9:.1f} G ({flops[v] / flops['standard']:.2f}x)" for v in VARIANTS))  # fmt: skip
    row = f"{'inspect':<12}"
    for t in threads:
        runs = out["inspect"][str(t)]
        wall, cpu_s = median([r[0] for r in runs]), median([r[1] for r in runs])
        row += f"{wall:>9.2f} s {cpu_s:>7.2f} cpu-s [{len(runs)}] one question, {out['inspect_tokens']} tok"
    print(row)
    if "trl" in out:
        trl = out["trl"]
        lengths = "/".join(f"{x:g}" for x in sorted(set(trl["mean_length"]))) or "?"
        print(f"{'trl':<12}{median(trl['seconds']):>12.2f} s [{len(trl['seconds'])}] at {threads[0]} thread(s), "
              f"mean completion {lengths} tok")  # fmt: skip
    elif "trl_error" in out:
        print(f"TRL: {out['trl_error']}")
    if out["rounds"]:
        for t in threads:
            decomposed = [s["decomposed"] for s in steps_of(out, "standard", t, timed)]
            passes = (
                "both contexts" if all(decomposed) else "the image context only" if not any(decomposed) else "mixed"
            )
            first = ", ".join(
                f"{v} {median([s['seconds'] for s in steps_of(out, v, t, 0)]):.2f} s "
                f"({median([s['cpu'] for s in steps_of(out, v, t, 0)]):.2f} cpu-s)"
                for v in VARIANTS
            )
            print(f"threads {t}: standard's timed steps scored {passes} (decompose_every={out['decompose_every']}); "
                  f"first steps (both contexts, AdamW state allocated): {first}")  # fmt: skip
    print()
    if cuda:
        what, base = "CUDA max allocated", 0
    else:
        what, base = "peak resident set - baseline", out["baseline"]
        what += "" if out["peak_resettable"] else " (the process's peak so far)"
    peaks = [f"{v} {fmt_gib(out['peaks'][v] - base)}" for v in VARIANTS if v in out["peaks"]]
    peaks += [f"trl {fmt_gib(out['trl']['peak'] - base)}"] if "trl" in out else []
    peaks += [f"inspect {fmt_gib(out['inspect_peak'] - base)}"]
    est = out["estimate"]
    print(f"memory ({what}): {', '.join(peaks)}")
    vision = out["vision_activations"]
    print(f"the student's vision tower keeps {vision / 2**20:.1f} MiB per image for its backward pass (measured on one "
          f"image), {fmt_gib(spec['batch'] * vision)} at batch {spec['batch']} (the estimate's formula: part of its activations)")  # fmt: skip
    print(f"memory estimate (vlod_core.memory, batch {spec['batch']}, {shapes['prompt']} + {spec['new_tokens']} tokens): "
          f"{fmt_gib(est['total'])} ({est['describe']}); baseline resident set {fmt_gib(out['baseline'])}")  # fmt: skip
    print(f"{out['rounds']} round(s) of {spec['rounds'] if spec['train'] else 0} (--budget {spec['budget']:g} s); "
          f"measured in {out['seconds']:.0f} s after loading (fresh child process)")  # fmt: skip
    for t in threads if out["rounds"] else ():
        ratios = [f"{v}/standard = {med[v, t] / med['standard', t]:.2f} (cpu {cpu[v, t] / cpu['standard', t]:.2f})"
                  for v in VARIANTS[1:]]  # fmt: skip
        if "trl" in out and t == threads[0]:
            ratios.append(f"standard/trl = {med['standard', t] / median(out['trl']['seconds']):.2f}")
        print(f"threads {t}: " + ", ".join(ratios))


def child_env() -> dict:
    """The environment of the measuring process: it imports the same vlod_core as this one."""
    import vlod_core

    root = str(Path(vlod_core.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="smolvlm")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the pair's: smolvlm cpu, qwen3 cuda)")
    parser.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="auto: bf16 on CUDA; on the CPU bf16 if oneDNN has it and it is faster")  # fmt: skip
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="intra-op thread counts, each timed in every round (default: 1; e.g. 1 2)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3,
                        help="rounds: timed steps per variant and thread count, at most (see --budget)")  # fmt: skip
    parser.add_argument("--budget", type=float, default=420,
                        help="seconds of rounds after which no new round starts (the first always runs)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--tiles", type=int, default=1,
                        help="SmolVLM: the processor's longest edge in 512-px tiles; the processor's default is 4 "
                        "(4x4 tiles + 1 global = 1088 image tokens), 1 fits this CPU's 10 minutes")  # fmt: skip
    parser.add_argument("--image-side", type=int, default=512, help="side of the square input image in pixels")
    parser.add_argument("--inspect-runs", type=int, default=2)
    parser.add_argument(
        "--flops", action="store_true", help="also count each variant's FLOPs per step (one more call each)"
    )
    parser.add_argument("--no-train", action="store_true", help="only the shapes, inspect and the memory estimate")
    parser.add_argument("--trl", action=argparse.BooleanOptionalAction, default=None,
                        help="also TRL's DistillationTrainer (default: on for qwen3)")  # fmt: skip
    parser.add_argument("--trl-steps", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="shrink depth and widths: the code path in seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: one round, one thread, one inspect")
    parser.add_argument("--keep", type=Path, default=None, help="save the built pair here (and keep it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw measurements (every step) here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child.read_text())
        print(json.dumps(measure(spec)))
        return 0

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    pair = PAIRS[args.pair]
    device = args.device or pair.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"real_sizes: error: --device {device} needs CUDA, and torch {torch.__version__} sees no CUDA device "
              f"here; run it on a GPU machine, or use --device cpu --tiny to smoke-test the code path", file=sys.stderr)  # fmt: skip
        return 2
    dtype, why = choose_dtype(args.dtype, device)
    threads = args.threads or [1]
    if args.quick:
        threads, rounds, inspect_runs, trl_steps = threads[:1], 1, 1, 1
    else:
        rounds, inspect_runs, trl_steps = args.steps, args.inspect_runs, args.trl_steps
    threads = list(dict.fromkeys(threads))
    trl = (args.trl if args.trl is not None else args.pair == "qwen3") and not args.no_train

    root = Path(tempfile.mkdtemp(prefix="vlod_real_sizes_")) if args.keep is None else args.keep
    try:
        opts = argparse.Namespace(tiny=args.tiny, tiles=args.tiles, device=device, torch_dtype=getattr(torch, dtype))
        started = time.perf_counter()
        folders = {}
        for role, teacher in (("teacher", True), ("student", False)):
            folders[role] = root / role
            SAVERS[args.pair](getattr(pair, role), folders[role], teacher, opts)
        build_seconds = time.perf_counter() - started
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        spec = dict(
            teacher=str(folders["teacher"]), student=str(folders["student"]), device=device, dtype=dtype,
            threads=threads, rounds=rounds, batch=args.batch, new_tokens=args.new_tokens, image_side=args.image_side,
            inspect_runs=inspect_runs, trl=trl, trl_steps=trl_steps, budget=args.budget,
            train=not args.no_train,
            flops=args.flops,
        )  # fmt: skip
        spec_file = root / "spec.json"
        spec_file.write_text(json.dumps(spec))
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_file)],
            stdout=subprocess.PIPE, text=True, env=child_env(),
        )  # fmt: skip
        if child.returncode != 0:
            print(
                f"real_sizes: error: the measuring process failed (exit {child.returncode}); see above", file=sys.stderr
            )
            return 1
        out = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    report(args, spec, why, build_seconds, out)
    if args.json is not None:
        args.json.write_text(json.dumps({"spec": spec, "dtype_reason": why, "measured": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
