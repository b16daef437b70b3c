"""Cost of one distillation step: standard OPD vs VGS (fixed and measured η) vs geometry vs TRL.

What one "step" is here: the real loop's step, `vlod_core.distill.distill` itself — the data's prompts,
`engine.rollout` (the prompts encoded once per context; the student samples from the image context's
encoding; one forward per model and context scores the answers), the per-token losses, `steering.objective`,
then either backward or, for `eta="auto"`, the three VJPs of `steering.steered_gradients` that give both η
and the update, gradient clipping, AdamW. Our steps are timed from the gaps between consecutive `callback`
calls of `distill` (perf_counter, so each gap is one whole step plus a trivial callback); the first step of
every `distill` call is set-up plus a step and is not counted.

Which passes each variant runs per step: `standard` (the default config) scores the image context only
(student and teacher), and both contexts every 10th step for the logged ℓLang/ℓVis/VDS; `standard_full`
scores both contexts every step; `vgs_fixed` and `vgs_auto` score both contexts every step (the rule needs
them).

The geometry row is `distill.geometry_now` (what the loop runs every `geometry_every` steps): one extra
student+teacher forward on the step's batch, then `geometry_of_losses`, timed with bins=0 (three gradient
calls) and with bins=10 (the paper's Fig. 3: 3 + 30 gradient calls).

The peer is TRL's `DistillationTrainer` (on-policy, reverse KL: beta=1) on the same pair, batch and
completion length, with its defaults brought to ours (lr 1e-3 constant, fp32, no gradient checkpointing,
the world's completion length (6 tokens; the reasoning world's 64), AdamW wd 0.01, clipping 1.0, structural tokens suppressed). Its steps and ours
alternate in one process: a `TrainerCallback.on_step_end` runs one round of our variants after every
`--trl-steps-per-round` (2) TRL steps, and a TRL step is timed from the callback's return to the next `on_step_end` (data loading,
generation, processor calls, forward, loss, backward, clipping, optimiser, scheduler, trainer overhead).

All timed work runs with one intra-op thread (`torch.set_num_threads(1)`): the machine has 2 cores shared
with other jobs. Variants are interleaved round-robin (order rotated each round) after a warm-up round;
the table reports medians. The closing lines (batch 32) are the ratios `standard/trl`, `standard_full/trl`,
`vgs_fixed/trl`, `vgs_fixed/standard`, `vgs_auto/standard`, `vgs_auto_rows8/standard` (η from the first 8
rows, with its error against the whole batch) and `geometry_bins10/standard`, one per line.

    python bench/step_cost.py                 # full run, ~3-5 minutes on 2 shared cores
    python bench/step_cost.py --world reasoning   # the same lines on the reasoning pair (64-token chains)
    python bench/step_cost.py --rounds 4 --no-trl --no-breakdown   # quick smoke run
    python bench/step_cost.py --real-sizes [--quick] [--pair qwen3 ...]   # the real-size rows (bench/real_sizes.py)
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections import defaultdict
from contextlib import contextmanager

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

THREADS = 1
torch.set_num_threads(THREADS)

from vlod_core import settings  # noqa: E402
from vlod_core.distill import DistillConfig, distill, geometry_now  # noqa: E402
from vlod_core.engine import rollout  # noqa: E402
from vlod_core import toy  # noqa: E402
from vlod_core.pair import PairSpec, load_pair  # noqa: E402
from vlod_core.sampling import SamplingConfig, structural_token_ids  # noqa: E402
from vlod_core.steering import SteeringConfig  # noqa: E402
from vlod_core.toy import TOY, TOY_REASONING  # noqa: E402
from vlod_core.toy.source import ToyPrompts, examples, toy_data, world_settings  # noqa: E402

FIXED_ETA = 0.41
VARIANTS = {
    "standard": SteeringConfig(rule="standard"),  # the default: image-free passes every 10th step (logging)
    "standard_full": SteeringConfig(rule="standard"),  # image-free passes every step
    "vgs_fixed": SteeringConfig(rule="vgs", eta=FIXED_ETA),
    "vgs_auto": SteeringConfig(rule="vgs", eta="auto"),
    "vgs_auto_rows8": SteeringConfig(rule="vgs", eta="auto", eta_rows=8),  # η from the batch's first 8 rows
}
GEOMETRY = {"geometry_bins0": 0, "geometry_bins10": 10}
DECOMPOSE_EVERY = {"standard_full": 1}


def median(values):
    return statistics.median(values) if values else float("nan")


WORLD_PAIRS = {"default": TOY, "reasoning": TOY_REASONING}  # toy world -> the spec name of its pair


def run_config(world_name: str, **values) -> DistillConfig:
    """A DistillConfig with the lengths the world's answers need (`world_settings`) and `values`."""
    sampling = {k: v for k, v in world_settings(world_name).items() if k != "answer_pattern"}
    return settings.build(DistillConfig, sampling | values)


def load_world_pair(world_name: str):
    """The toy world's pair (built first if missing), on the CPU."""
    spec = PairSpec(teacher=WORLD_PAIRS[world_name], student=WORLD_PAIRS[world_name], device="cpu")
    return load_pair(spec, toy.folders(spec))


class Bench:
    """One batch size: our variants and the geometry call, run one round at a time."""

    def __init__(self, pair, batch: int, steps_per_block: int, world_name: str = "default"):
        self.pair, self.batch, self.block, self.world = pair, batch, steps_per_block, world_name
        self.times: dict[str, list[float]] = defaultdict(list)
        self.tokens: dict[str, list[float]] = defaultdict(list)  # mean response length per step
        self.round = 0
        self.data = toy_data(eval_rows=1, show_rows=0, world_name=world_name)
        # A fixed batch for the geometry call, sampled by the initial student like a real step's batch.
        self.geo_student = copy.deepcopy(pair.student).train()
        self.geo_params = [(n, p) for n, p in self.geo_student.named_parameters() if p.requires_grad]
        self.geo_config = {b: run_config(world_name, batch=batch, geometry_bins=b) for b in GEOMETRY.values()}
        rows = ToyPrompts(world_name).prompts(0, batch, seed=0)
        # The default world keeps the rollout's own length (8), as the numbers in bench/README were measured.
        sampling = self.geo_config[0].sampling if world_name != "default" else SamplingConfig()
        self.geo_batch = rollout(
            pair, [r.load_image() for r in rows], [r.question for r in rows], sampling=sampling, seed=0
        )

    def run_variant(self, name: str, record: bool) -> None:
        config = replace(
            run_config(self.world, steps=self.block + 1, batch=self.batch, seed=self.round),  # same data per round
            steering=VARIANTS[name],
            eval_examples=1,
            answer_examples=0,
            decompose_every=DECOMPOSE_EVERY.get(name, DistillConfig.decompose_every),
        )
        stamps, tokens = [], []

        def callback(rec):
            stamps.append(time.perf_counter())
            tokens.append(rec.response_tokens / self.batch)

        distill(self.pair, config, self.data, callback=callback, evaluate_model=False)
        if record:
            self.times[name] += [b - a for a, b in zip(stamps, stamps[1:])]
            self.tokens[name] += tokens[1:]

    def run_geometry(self, name: str, record: bool) -> None:
        bins = GEOMETRY[name]
        start = time.perf_counter()
        geometry_now(self.pair, self.geo_student, self.geo_params, self.geo_batch, self.geo_config[bins])
        if record:
            self.times[name].append(time.perf_counter() - start)

    def one_round(self, record: bool = True, geometry: bool = True) -> None:
        names = list(VARIANTS) + (list(GEOMETRY) if geometry else [])
        shift = self.round % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order: no variant always goes first
            (self.run_geometry if name in GEOMETRY else self.run_variant)(name, record)
        self.round += 1


def trl_dataset(n: int, seed: int, world_name: str = "default"):
    from datasets import Dataset

    rows = examples(n, seed, world_name)
    # TRL's conversational VLM format: a raw (untemplated) prompt plus an "image" column; the trainer
    # inserts the image entry into the user message and applies the chat template itself.
    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": ex.question}], "image": ex.image()} for ex in rows]
    )


def run_with_trl(pair, bench: Bench, rounds: int, geometry: bool, trl_per_round: int) -> None:
    """`trl_per_round` TRL steps, then one round of ours, and so on; each TRL step is timed from the previous
    `on_step_end` callback's return to its own `on_step_end`."""
    from transformers import PrinterCallback, TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    tokenizer = pair.tokenizer
    args = DistillationConfig(
        output_dir=tempfile.mkdtemp(prefix="vlod_bench_trl_"),
        per_device_train_batch_size=bench.batch,
        gradient_accumulation_steps=1,
        max_steps=trl_per_round * (rounds + 1),  # the first round is warm-up
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        max_grad_norm=1.0,
        bf16=False,
        gradient_checkpointing=False,
        max_completion_length=bench.data.description.get("max_new_tokens", DistillConfig().sampling.max_new_tokens),
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=1.0,  # reverse KL
        # A custom list replaces TRL's own [image_token_id]: suppress every structural token but EOS.
        generation_kwargs={"suppress_tokens": structural_token_ids(tokenizer)},
        use_cpu=True,
        report_to=[],
        logging_steps=10_000,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trl_times, trl_tokens = [], []

    class Interleave(TrainerCallback):
        def __init__(self):
            self.resumed = None
            self.trainer = None

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            torch.set_num_threads(THREADS)  # in case anything reset it
            warm = state.global_step <= trl_per_round
            if not warm:
                trl_times.append(now - self.resumed)
                lengths = self.trainer._metrics["train"].get("completions/mean_length", [])
                if lengths:
                    trl_tokens.append(lengths[-1])
            if state.global_step % trl_per_round == 0:
                bench.one_round(record=not warm, geometry=geometry)
            self.resumed = time.perf_counter()

    callback = Interleave()
    trainer = DistillationTrainer(
        model=copy.deepcopy(pair.student),
        teacher_model=copy.deepcopy(pair.teacher),
        args=args,
        train_dataset=trl_dataset(max(512, 4 * bench.batch), seed=777, world_name=bench.world),
        processing_class=copy.deepcopy(pair.processor),
        callbacks=[callback],
    )
    callback.trainer = trainer
    trainer.remove_callback(PrinterCallback)  # it prints the metrics dict at the end
    try:
        trainer.train()
    finally:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    bench.times["trl"] = trl_times
    bench.tokens["trl"] = trl_tokens


def trl_unavailable_reason() -> str | None:
    try:
        import trl  # noqa: F401
        from trl import DistillationTrainer  # noqa: F401
    except Exception as error:  # noqa: BLE001
        return f"trl is not importable ({type(error).__name__}: {error}); pip install -r bench/requirements.txt"
    return None


PHASES = (
    "data: the step's prompts (toy scenes drawn)",
    "encode: processor calls, once per context",
    "  of which chat-template renders",
    "sampling (student, from the image encoding)",
    "  of which the decode loop (decoding.decode)",
    "scoring: teacher + student forwards",
    "per-token losses",
    "objective",
    "VJPs (eta auto: eta and the update)",
    "backward",
    "AdamW step",
    "= whole step (median gap)",
)


@contextmanager
def timed_phases(totals: dict[str, float], model_class):
    """Wrap the loop's pieces (module globals looked up at call time) and time each call."""
    import vlod_core.distill as d
    import vlod_core.engine as engine
    import vlod_core.inputs as inputs

    originals = {}

    def wrap(owner, attr, label):
        fn = getattr(owner, attr)
        originals[(owner, attr)] = fn

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                totals[label] += time.perf_counter() - t

        setattr(owner, attr, timed)

    wrap(ToyPrompts, "prompts", PHASES[0])
    wrap(engine, "encode", PHASES[1])
    wrap(inputs, "render_prompt", PHASES[2])
    wrap(engine, "sample", PHASES[3])
    import vlod_core.decoding as decoding

    wrap(decoding, "decode", PHASES[4])
    wrap(engine, "score_responses", PHASES[5])
    wrap(d, "per_token_losses", PHASES[6])
    wrap(d, "objective", PHASES[7])
    wrap(torch.autograd, "grad", PHASES[8])
    wrap(torch.autograd, "backward", PHASES[9])
    wrap(torch.optim.AdamW, "step", PHASES[10])
    try:
        yield
    finally:
        for (owner, attr), fn in reversed(list(originals.items())):
            setattr(owner, attr, fn)


def breakdown(pair, batch: int, steps: int, world_name: str = "default") -> dict[str, dict[str, float]]:
    """Per-phase ms per step of each variant (one distill run each; its first step is not counted)."""
    out = {}
    for name, steering in VARIANTS.items():
        totals: dict[str, float] = defaultdict(float)
        config = replace(
            run_config(world_name, steps=steps + 1, batch=batch),
            steering=steering,
            eval_examples=1,
            answer_examples=0,
            decompose_every=DECOMPOSE_EVERY.get(name, DistillConfig.decompose_every),
        )
        stamps = []

        def callback(_record):
            stamps.append(time.perf_counter())
            if len(stamps) == 1:
                totals.clear()  # drop the first step (set-up and first calls)

        with timed_phases(totals, type(pair.student)):
            data = toy_data(eval_rows=1, show_rows=0, world_name=world_name)
            distill(pair, config, data, callback=callback, evaluate_model=False)
        per_step = {k: 1000 * v / steps for k, v in totals.items()}
        per_step[PHASES[-1]] = 1000 * median([b - a for a, b in zip(stamps, stamps[1:])])
        out[name] = per_step
    return out




def eta_rows_error(pair, batch: int, rows: int, seeds=range(6), world_name: str = "default") -> list[float]:
    """|η(first `rows` rows) − η(whole batch)| / η(whole batch) on `seeds` on-policy batches of the initial student."""
    from vlod_core import eta_sample
    from vlod_core.losses import per_token_losses
    from vlod_core.steering import objective, steered_gradients

    student = copy.deepcopy(pair.student).train()
    params = [p for p in student.parameters() if p.requires_grad]
    errors = []
    sampling = run_config(world_name).sampling if world_name != "default" else SamplingConfig()  # as measured
    for seed in seeds:
        prompts = ToyPrompts(world_name).prompts(seed, batch, seed=seed)
        scored = rollout(pair, [r.load_image() for r in prompts], [r.question for r in prompts], seed=seed,
                         student=student, student_grad=True, sampling=sampling)
        steering = SteeringConfig(rule="vgs", eta_rows=rows)
        losses = per_token_losses(scored.four, steering.estimator, steering.detach_prior)
        full, _ = steered_gradients(objective(steering, losses, scored.four.response_mask), params)
        scored = rollout(pair, [r.load_image() for r in prompts], [r.question for r in prompts], seed=seed,
                         student=student, student_grad=True, sampling=sampling)
        sub = eta_sample.subsample_eta(pair, student, scored, steering, params)
        errors.append(abs(sub - full) / full)
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=16, help="timed rounds per batch size (after 1 warm-up)")
    parser.add_argument("--steps-per-block", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--trl-steps-per-round", type=int, default=2, help="TRL steps between two rounds of ours")
    parser.add_argument("--no-trl", action="store_true", help="skip TRL's DistillationTrainer")
    parser.add_argument("--no-geometry", action="store_true")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-phase breakdown")
    parser.add_argument(
        "--world", choices=sorted(WORLD_PAIRS), default="default",
        help="default: the toy pair ($VLOD_HOME/toy); reasoning: the reasoning pair ($VLOD_HOME/toy-reasoning)",
    )
    parser.add_argument(
        "--real-sizes", nargs=argparse.REMAINDER, default=None, metavar="ARGS",
        help="instead: the real-size rows (SmolVLM 256M/500M, random weights), `bench/real_sizes.py` with ARGS",
    )
    args = parser.parse_args(argv)
    if args.real_sizes is not None:  # kept out of the default run: minutes, not seconds
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import real_sizes

        return real_sizes.main(args.real_sizes)
    logging.disable(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass

    print(f"torch {torch.__version__}, intra-op threads: {torch.get_num_threads()} (torch.set_num_threads({THREADS}))")
    pair = load_world_pair(args.world)
    length = run_config(args.world).sampling.max_new_tokens
    print(
        f"pair: toy LLaVA, teacher {sum(p.numel() for p in pair.teacher.parameters()):,} params, "
        f"student {sum(p.numel() for p in pair.student.parameters()):,} params; "
        f"world {args.world}, max_new_tokens {length}"
    )
    trl_reason = None if not args.no_trl else "skipped (--no-trl)"
    if trl_reason is None:
        trl_reason = trl_unavailable_reason()
        if trl_reason is None:
            import trl

            print(f"peer: trl {trl.__version__} DistillationTrainer (beta=1, reverse KL), same pair/batch/length")

    started = time.perf_counter()
    results: dict[int, Bench] = {}
    for batch in args.batches:
        bench = Bench(pair, batch, args.steps_per_block, args.world)
        geometry = not args.no_geometry
        ran_trl = False
        if trl_reason is None:
            try:
                run_with_trl(pair, bench, args.rounds, geometry, args.trl_steps_per_round)
                ran_trl = True
            except Exception as error:  # noqa: BLE001
                tb = traceback.extract_tb(error.__traceback__)[-1]
                trl_reason = (
                    f"TRL DistillationTrainer failed on this pair: {type(error).__name__}: {error} "
                    f"(at {os.path.basename(tb.filename)}:{tb.lineno} in {tb.name})"
                )
                bench = Bench(pair, batch, args.steps_per_block, args.world)
        if not ran_trl:
            bench.one_round(record=False, geometry=geometry)  # warm-up
            for _ in range(args.rounds):
                bench.one_round(record=True, geometry=geometry)
        results[batch] = bench
        print(f"batch {batch}: done after {time.perf_counter() - started:.0f} s")

    names = list(VARIANTS) + ([] if args.no_geometry else list(GEOMETRY)) + (["trl"] if trl_reason is None else [])
    print()
    print("median ms per step, ratio to standard at the same batch, [n samples], mean response tokens")
    header = f"{'variant':<18}" + "".join(f"{'batch ' + str(b):>34}" for b in args.batches)
    print(header)
    for name in names:
        row = f"{name:<18}"
        for batch in args.batches:
            bench = results[batch]
            ms = 1000 * median(bench.times[name])
            ratio = ms / (1000 * median(bench.times["standard"]))
            toks = bench.tokens.get(name)
            tok_text = f"{statistics.mean(toks):.2f}tok" if toks else "  fixed"
            row += f"{ms:>10.1f} ms {ratio:>6.2f}x [{len(bench.times[name]):>3}] {tok_text:>8}"
        print(row)
    if not args.no_geometry:
        print("geometry_bins0 = distill.geometry_now with geometry_bins=0 (forward + 3 autograd.grad calls);")
        print("geometry_bins10 = the same with 10 VDS bins (3 + 30 autograd.grad calls); both on one fixed batch.")

    if not args.no_breakdown:
        batch = max(args.batches)
        print()
        print(f"per-phase breakdown at batch {batch}: ms per step, mean of 8 steps of one run per variant, timed by")
        print("wrapping the functions the loop calls (not listed: clipping, step records)")
        table = breakdown(pair, batch, 8, args.world)
        print(f"{'phase':<44}" + "".join(f"{n:>12}" for n in table))
        for label in PHASES:
            print(f"{label:<44}" + "".join(f"{table[n].get(label, 0.0):>12.1f}" for n in table))

    print()
    print(f"total benchmark time {time.perf_counter() - started:.0f} s; one intra-op thread throughout")
    last = max(args.batches)
    bench = results[last]
    std_ms = median(bench.times["standard"])
    for batch in args.batches:
        if trl_reason is None:
            b = results[batch]
            print(
                f"batch {batch}: standard/TRL {median(b.times['standard']) / median(b.times['trl']):.2f}, "
                f"vgs_fixed/TRL {median(b.times['vgs_fixed']) / median(b.times['trl']):.2f}"
            )
    if trl_reason is None:
        print(f"(batch {last}, medians)")
        print(f"standard/trl = {std_ms / median(bench.times['trl']):.2f}")
        print(f"standard_full/trl = {median(bench.times['standard_full']) / median(bench.times['trl']):.2f}")
        print(f"vgs_fixed/trl = {median(bench.times['vgs_fixed']) / median(bench.times['trl']):.2f}")
    else:
        print(f"TRL: {trl_reason}")
    print(f"vgs_fixed/standard = {median(bench.times['vgs_fixed']) / std_ms:.2f}")
    print(f"vgs_auto/standard = {median(bench.times['vgs_auto']) / std_ms:.2f}")
    print(f"vgs_auto_rows8/standard = {median(bench.times['vgs_auto_rows8']) / std_ms:.2f}")
    errors = eta_rows_error(pair, last, 8, world_name=args.world)
    print(f"eta_rows=8 error vs the whole batch's eta (batch {last}, {len(errors)} batches): "
          f"median {100 * median(errors):.1f} %, max {100 * max(errors):.1f} %")
    if not args.no_geometry:
        print(f"geometry_bins10/standard = {median(bench.times['geometry_bins10']) / std_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
