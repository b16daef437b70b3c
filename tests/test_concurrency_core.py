"""Several sessions share one loaded pair: runs in threads must not touch it, nor each other's randomness.

The app serves every user from one cached `ModelPair`, with long work in threads. So: a shared model is
bit-identical after concurrent runs, each run gives exactly what its seed gives alone, and no vlod_core
module keeps per-user state at module level.
"""

from __future__ import annotations

from types import MappingProxyType

import ast
import copy
import dataclasses
import hashlib
import importlib
import json
import logging
import pkgutil
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import vlod_core
from vlod_core.distill import DistillConfig, distill
from vlod_core.inspection import inspect
from vlod_core.sampling import SamplingConfig, SeededSampler, generate
from vlod_core.toy.source import toy_data

SEEDS = (0, 1, 2, 3)
DATA = toy_data(8, 2)  # one data set shared by every concurrent run, as the app shares it
CORE = Path(vlod_core.__file__).parent
# Build-time code with its own private processor; nobody else can be calling it concurrently.
PRIVATE_TOKENIZER_MODULES = {"toy/train.py", "testing/second_family.py", "toy/build.py", "toy/reasoning_build.py"}


def _pads_right(call: ast.Call, function: ast.AST | None) -> bool:
    """Whether the call passes padding=True, padding_side="right" (directly, or in a `**kwargs` dict literal)."""
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    for star in (k.value for k in call.keywords if k.arg is None):
        for node in ast.walk(function) if function is not None and isinstance(star, ast.Name) else ():
            assigns_star = isinstance(node, ast.Assign) and any(getattr(t, "id", None) == star.id for t in node.targets)
            if assigns_star and isinstance(node.value, ast.Dict):
                pairs = zip(node.value.keys, node.value.values)
                keywords |= {k.value: v for k, v in pairs if isinstance(k, ast.Constant)}
    side, padding = keywords.get("padding_side"), keywords.get("padding")
    return getattr(side, "value", None) == "right" and getattr(padding, "value", None) is True


def tokenizer_calls_that_may_race() -> list[str]:
    """Calls of a tokenizer or processor in vlod_core that do not pad right.

    A fast tokenizer keeps its padding settings on the shared Rust backend: each call sets them (an unpadded
    call switches padding off) and then encodes, so two sessions calling with different settings can make one
    of them encode with the other's (left padding turned right, or no padding at all). With every call padding
    right the settings never change, whoever calls.
    """
    found = []
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE).as_posix()
        if relative in PRIVATE_TOKENIZER_MODULES:
            continue
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if callee not in ("tokenizer", "processor"):
                continue
            function = next((f for f in functions if f.lineno <= node.lineno <= f.end_lineno), None)
            if not _pads_right(node, function):
                found.append(f"vlod_core/{relative}:{node.lineno}")
    return found


RACY_CALLS = tokenizer_calls_that_may_race()


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict: names, dtypes, shapes and raw bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def card_outcome(card) -> str:
    """Everything a seed determines in a run card (wall-clock times left out)."""
    records = [{k: v for k, v in record.items() if k != "seconds"} for record in card.records]
    fields = dict(
        records=records, before=card.before, after=card.after, answers=card.answers_after, stopped=card.stopped
    )
    return json.dumps(fields, sort_keys=True, allow_nan=True)


def config(seed: int) -> DistillConfig:
    return DistillConfig(
        steps=3, batch=4, lr=1e-2, seed=seed, eval_examples=8, answer_examples=2,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=4),
    )  # fmt: skip


def run_in_threads(work, args) -> dict:
    """`work(arg)` for every arg at once (started together by a barrier); re-raises a thread's error."""
    barrier = threading.Barrier(len(args))
    results, errors = {}, {}

    def target(arg):
        try:
            barrier.wait()
            results[arg] = work(arg)
        except BaseException as error:  # noqa: BLE001 - reported below, in the test's thread
            errors[arg] = error

    threads = [threading.Thread(target=target, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise next(iter(errors.values()))
    return results


def test_no_call_sets_the_shared_tokenizers_padding_side():
    """A tokenizer call that does not pad right explicitly stores its padding side on the shared Rust backend, and
    two sessions asking for different sides race (the concurrency tests below would then fail by chance)."""
    assert RACY_CALLS == [], f"these calls must pass padding=True, padding_side='right': {RACY_CALLS}"


def test_concurrent_distillation_on_one_shared_pair(toy_pair):
    teacher_before, student_before = state_digest(toy_pair.teacher), state_digest(toy_pair.student)
    padding_side = toy_pair.tokenizer.padding_side

    alone = {seed: distill(toy_pair, config(seed), DATA) for seed in SEEDS}
    outcomes_alone = {seed: card_outcome(result.card) for seed, result in alone.items()}
    assert len(set(outcomes_alone.values())) == len(SEEDS), "seeds should give different runs"

    together = run_in_threads(lambda seed: distill(toy_pair, config(seed), DATA), SEEDS)

    for seed in SEEDS:
        assert card_outcome(together[seed].card) == outcomes_alone[seed], f"seed {seed} differs when run concurrently"
        assert state_digest(together[seed].student) == state_digest(alone[seed].student)
    assert state_digest(toy_pair.teacher) == teacher_before
    assert state_digest(toy_pair.student) == student_before
    assert not toy_pair.teacher.training and not toy_pair.student.training
    assert not any(p.requires_grad for p in toy_pair.teacher.parameters())
    assert all(p.grad is None for p in toy_pair.student.parameters())
    assert toy_pair.tokenizer.padding_side == padding_side


def test_concurrent_inspections_match_their_solo_results(toy_pair, examples):
    image, question = examples[1].image(), examples[1].question
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=5)

    def look(seed):
        result = inspect(toy_pair, image, question, sampling=sampling, seed=seed)
        return json.dumps(result.to_dict(), sort_keys=True)

    alone = {seed: look(seed) for seed in SEEDS}
    assert run_in_threads(look, SEEDS) == alone


def test_the_race_finder_sees_what_it_looks_for():
    """The scan behind `RACY_CALLS` finds the calls it should, so an empty list means something."""
    sample = ast.parse(
        "def f(tokenizer, processor, texts):\n"
        "    tokenizer(texts)\n"
        "    tokenizer(texts, padding=True, padding_side='left')\n"
        "    tokenizer(texts, padding=True, padding_side='right')\n"
        "    kwargs = {'text': texts, 'padding': True, 'padding_side': 'right'}\n"
        "    processor(**kwargs)\n"
    )
    function = sample.body[0]
    calls = [
        n
        for n in ast.walk(sample)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("tokenizer", "processor")
    ]
    assert [_pads_right(call, function) for call in sorted(calls, key=lambda c: c.lineno)] == [False, False, True, True]


def test_left_alignment_moves_padding_to_the_front():
    from vlod_core.sampling import left_align

    encoded = {
        "input_ids": torch.tensor([[5, 6, 7], [8, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
        "pixel_values": torch.ones(2, 3),  # not per-token ids: left alone
    }
    aligned = left_align(encoded)
    assert aligned["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert aligned["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert aligned["pixel_values"] is encoded["pixel_values"]


def test_seeded_sampling_neither_uses_nor_moves_the_global_rng(toy_pair, examples):
    images, questions = [ex.image() for ex in examples[:4]], [ex.question for ex in examples[:4]]
    sampling = SamplingConfig(temperature=1.5, max_new_tokens=6)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = generate(toy_pair.student, toy_pair.processor, questions, images, sampling, generator_seed=9)
    assert torch.equal(torch.get_rng_state(), state), "seeded sampling consumed the global RNG"
    torch.manual_seed(456)
    assert generate(toy_pair.student, toy_pair.processor, questions, images, sampling, generator_seed=9) == first
    other = [
        generate(toy_pair.student, toy_pair.processor, questions, images, sampling, generator_seed=s) for s in range(4)
    ]
    assert any(sample != first for sample in other), "different seeds should (almost surely) sample differently"


def test_sampler_draws_from_transformers_temperature_and_top_p_distribution():
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 12, generator=generator) * 2  # (B, V)
    scores[:, 5] = float("-inf")  # a suppressed token stays impossible
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9), (1.5, 0.5)):
        sampler = SeededSampler(SamplingConfig(temperature=temperature, top_p=top_p), torch.Generator().manual_seed(1))
        reference = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, scores.clone()))
        expected = reference.softmax(-1)  # (B, V)
        draws = 4000
        out = sampler(None, scores.repeat(draws, 1)).view(draws, *scores.shape)  # (draws, B, V)
        assert (torch.isfinite(out).sum(-1) == 1).all()  # exactly one token left: the drawn one
        counts = torch.isfinite(out).float().sum(0)
        frequencies = counts / draws
        assert (frequencies[expected == 0] == 0).all(), "drew a token top-p or suppression removed"
        assert torch.allclose(frequencies, expected, atol=0.035), (frequencies, expected)


def test_same_seed_and_config_give_the_same_run_card(toy_pair):
    first = distill(toy_pair, config(7), DATA).card
    torch.manual_seed(999)  # whatever the global RNG holds must not matter
    np.random.seed(999)
    second = distill(toy_pair, config(7), DATA).card
    assert card_outcome(second) == card_outcome(first)
    assert second.after == first.after and second.before == first.before
    assert card_outcome(distill(toy_pair, config(8), DATA).card) != card_outcome(first)


# --- no per-user state at module level -------------------------------------------------------------------------

# Constant lookup tables (never written to); anything else mutable at module level would be shared by all users.
CONSTANT_TABLES = {
    "vlod_core.evaluation": {"SUFFIX"},
    "vlod_core.figures.tokens": {"DISTRIBUTIONS"},
    "vlod_core.topk": {"DISTRIBUTIONS"},
    "vlod_core.toy.tokenizer": {"EXTRA_WORDS"},
    "vlod_core.toy.world": {"RGB", "SHAPE_WEIGHTS", "FAVOURITE_COLOUR", "COUNT_WEIGHTS", "_MASKS"},
    "vlod_core.toy.scenes": {"_OBJECT"},  # a compiled regular expression
    "vlod_core.toy.reasoning": {"_FIELD"},  # a compiled regular expression
}
# Cached functions that build a constant, seeded table once per process; what they return is read-only.
CACHED_TABLES = {
    "vlod_core.toy.drawings": {"sprite_bank", "_noise_bank"},
    "vlod_core.decoding": {"_forward_accepts"},  # a fact of a model class
}
IMMUTABLE = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    tuple,
    frozenset,
    range,
    logging.Logger,
    MappingProxyType,
)


def core_modules() -> list[types.ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(vlod_core.__path__, "vlod_core.") if m.name != "vlod_core.__main__"]
    return [vlod_core] + [importlib.import_module(name) for name in names]


def _is_frozen_dataclass(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and value.__dataclass_params__.frozen


def module_state() -> dict[str, list[str]]:
    """Module globals that could hold state, by module: mutable values, caches, models, tensors."""
    found: dict[str, list[str]] = {}
    for module in core_modules():
        for name, value in vars(module).items():
            if name.startswith("__") or name == "annotations" or isinstance(value, (types.ModuleType, type)):
                continue
            if hasattr(value, "cache_info") or hasattr(value, "cache_clear"):
                if name in CACHED_TABLES.get(module.__name__, ()):
                    continue
                found.setdefault(module.__name__, []).append(f"{name} (a cached function)")
            elif isinstance(value, (torch.nn.Module, torch.Tensor)) or not (
                callable(value) or isinstance(value, IMMUTABLE) or _is_frozen_dataclass(value)
            ):
                found.setdefault(module.__name__, []).append(name)
    return found


def test_no_module_keeps_per_user_state():
    state = module_state()
    unexpected = {
        module: sorted(set(names) - CONSTANT_TABLES.get(module, set()))
        for module, names in state.items()
        if set(names) - CONSTANT_TABLES.get(module, set())
    }
    assert unexpected == {}, f"module-level state (allow-list it only if it is a constant table): {unexpected}"


def _snapshot() -> dict:
    tables = {}
    for module_name, names in CONSTANT_TABLES.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            tables[f"{module_name}.{name}"] = copy.deepcopy(value)
    return tables


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_constant_tables_are_not_written_to_by_a_session(toy_pair, examples):
    before = _snapshot()
    inspect(toy_pair, examples[0].image(), "what color is the circle ?", seed=0)
    distill(toy_pair, DistillConfig(steps=1, batch=2, eval_examples=4, answer_examples=1), toy_data(4, 1))
    after = _snapshot()
    changed = [name for name in before if not _same(before[name], after[name])]
    assert changed == []
    assert module_state().keys() <= CONSTANT_TABLES.keys()


def test_cached_tables_are_read_only():
    from vlod_core.toy import drawings

    tables = [*drawings.sprite_bank().values(), drawings._noise_bank()]
    for table in tables:
        with pytest.raises(ValueError, match="read-only"):
            table[0] = 1.0


@pytest.mark.parametrize("module_name", sorted(CONSTANT_TABLES))
def test_allow_list_names_exist(module_name):
    """A stale allow-list entry would hide nothing, but would mislead the next reader."""
    module = importlib.import_module(module_name)
    assert all(hasattr(module, name) for name in CONSTANT_TABLES[module_name])
