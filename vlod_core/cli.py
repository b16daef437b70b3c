"""The command line: the same things the app does, headless. `python -m vlod_core --help`.

Errors the user can fix (bad paths, bad images, bad numbers) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path

from vlod_core import settings
from vlod_core.images import ImageError
from vlod_core.pair import TOY, PairError, PairSpec
from vlod_core.run_summary import CONTEXTS, METRICS, headline, steps_to_gain

EXIT_USAGE = 2


class _ProgressLine:
    """Progress on stderr (the library itself never prints): redrawn in place on a terminal; in a log file or a
    pipe, a whole line only when `key` changes (a new tenth of the work, a new stage), so a log stays readable
    instead of holding every step on one line."""

    def __init__(self):
        self._last = object()

    def show(self, text: str, key, end: bool = False) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r" + text + ("\n" if end else ""))
        elif end or key != self._last:
            sys.stderr.write(text.rstrip() + "\n")
        self._last = key
        sys.stderr.flush()


def _progress_printer(label: str):
    """A one-line progress bar on stderr."""
    line = _ProgressLine()

    def report(stage: str, fraction: float) -> None:
        filled = int(30 * fraction)
        text = f"{label}: [{'#' * filled}{'.' * (30 - filled)}] {fraction:5.1%} {stage:<28}"
        line.show(text, key=(stage, int(10 * fraction)), end=fraction >= 1)

    return report


def _add_pair_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--world",
        default="default",
        choices=["default", "reasoning"],
        help="the toy world: its prompts, its pair (unless --teacher/--student name another) and the answer "
        "lengths and answer pattern its answers need (reasoning: 64 new tokens, boxed final answers)",
    )
    parser.add_argument("--teacher", default=TOY, help="teacher: a local folder, a Hub id, or 'toy' (default)")
    parser.add_argument("--student", default=TOY, help="student: a local folder, a Hub id, or 'toy' (default)")
    parser.add_argument("--blind-student", action="store_true", help="toy only: the text-only-trained student")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model's own code (off by default)")
    parser.add_argument(
        "--threads",
        type=_thread_count,
        help="torch's threads in this process (default: torch's own, one per core); give several runs on one "
        "machine one each, or they slow each other down many times over",
    )


def _thread_count(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {count}")
    return count


def _add_grounding_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--require-grounded-teacher",
        action="store_true",
        help="refuse (exit 2) when the teacher's answers do not depend on the image (vlod_core.grounding)",
    )


def _pair_spec(args) -> PairSpec:
    return PairSpec(
        teacher=args.teacher,
        student=args.student,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        student_variant="student_blind" if args.blind_student else "student",
    )


PROMPT_TOKENS = 320  # assumed prompt length for the memory check: a 448-px image is 256 tokens in Qwen2.5-VL


def _load_pair(args, training: bool = False):
    """Build the toy pair on first use; check a training run fits in memory before loading anything."""
    return _located_pair(args, training)[0]


def _located_pair(args, training: bool = False):
    """`_load_pair`'s pair and the folders it was read from (None: the spec's own names), which the paper
    check's workers read it from too."""
    from vlod_core import toy
    from vlod_core.memory import check_pair_memory
    from vlod_core.pair import load_pair

    spec = _pair_spec(args)
    folders = toy.folders(spec, progress=_progress_printer("building the toy pair (first use)"))
    if training:
        lengths = (PROMPT_TOKENS, args.max_new_tokens)
        check_pair_memory(
            spec, args.batch, lengths, args.lora_rank or None, args.gradient_checkpointing, folders=folders
        )
    return load_pair(spec, folders), folders


def _add_data_args(parser: argparse.ArgumentParser, evaluation: bool = True) -> None:
    parser.add_argument(
        "--data",
        help="a data set: an image folder, a .jsonl/.json/.parquet file, a saved data set, a zip, or a Hub id "
        "(default: the toy world)",
    )
    if evaluation:
        parser.add_argument("--eval-data", help="evaluate on this data set (default: the held-out part of --data)")
        parser.add_argument(
            "--eval-fraction", type=float, default=0.2, help="share of --data held out when it has no split (0.2)"
        )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row instead of skipping it")


def _read(source: str, args, role: str):
    from vlod_core.sources import load_data

    data = load_data(source, strict=args.strict)
    sys.stderr.write(f"{role}: {data.summary()}\n")
    return data


def _training_data(args):
    """The toy world unless --data is given; prints what was read, skipped and how it was split."""
    from vlod_core.data import DataSplit, TrainingData, split_rows

    if not args.data:
        if args.eval_data:
            raise ValueError("--eval-data needs --data (the toy world has its own held-out set)")
        from vlod_core.toy.source import toy_data

        return toy_data(args.eval_examples, world_name=args.world)
    data = _read(args.data, args, "data")
    if args.eval_data:
        held = _read(args.eval_data, args, "evaluation data")
        split = DataSplit(data.rows, held.rows, False, f"evaluated on {held.name} ({len(held.rows)} rows)")
    else:
        split = split_rows(data.rows, args.eval_fraction, seed=0)
    sys.stderr.write(f"split: {split.how}; {len(split.train)} training rows, {len(split.eval)} evaluation rows\n")
    return TrainingData.from_split(split, data.name, extra={"origin": data.origin, "skipped": len(data.skipped)})


def _grounding(args, pair, rows=None):
    """Check that each model reads the image (`vlod_core.grounding`) on a few rows; warnings on stderr.

    With --require-grounded-teacher a teacher that ignores the image is refused (exit 2) before anything runs.
    """
    from vlod_core.grounding import DEFAULT_ROWS, check_pair, require_grounded_teacher

    if rows is None:  # drawn toy scenes: rows any VLM can be asked about
        from vlod_core.toy.source import held_out_rows

        rows = held_out_rows(DEFAULT_ROWS, args.world)
    report = check_pair(pair, rows, log=False)
    if getattr(args, "require_grounded_teacher", False):
        require_grounded_teacher(report)  # the refusal says what the warning would have said
    for text in report.warnings:
        sys.stderr.write(f"vlod: warning: {text}\n")
    for text in report.notes:
        sys.stderr.write(f"vlod: note: {text}\n")
    return report


def cmd_toy_build(args) -> int:
    from vlod_core.toy.build import ToyBuildConfig, build_toy_pair, default_toy_dir

    if args.world == "reasoning":
        return _build_reasoning(args)
    out = Path(args.out) if args.out else default_toy_dir()
    card = build_toy_pair(out, ToyBuildConfig(seed=args.seed), progress=_progress_printer("building the toy pair"))
    print(f"wrote {out} in {card['build_seconds']} s")
    for name in ("teacher", "student", "student_blind"):
        print(
            f"  {name:<14} accuracy with image {card[name]['accuracy_image']:.3f}   without {card[name]['accuracy_no_image']:.3f}"
        )
    return 0


def _token_table(rows: list[dict]) -> str:
    header = f"{'token':<12}{'std_kl':>9}{'lang_kl':>9}{'vis_kl':>9}{'vds':>9}{'logratio':>10}{'= lang':>9}{'+ vis':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['token']:<12}{r['std_kl']:>9.3f}{r['lang_kl']:>9.3f}{r['vis_kl']:>9.3f}{r['vds']:>9.3f}"
            f"{r['logratio']:>10.3f}{r['logratio_lang']:>9.3f}{r['logratio_vis']:>9.3f}"
        )
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    from vlod_core.images import load_image
    from vlod_core.inspection import inspect
    from vlod_core.sampling import SamplingConfig
    from vlod_core.text import check_question

    loaded = load_image(args.image)
    question, notes = check_question(args.question)
    pair = _load_pair(args)
    sampling = settings.build(SamplingConfig, settings.from_arguments(args, ("temperature", "top_p", "max_new_tokens")))
    grounding = _grounding(args, pair)  # on drawn scenes: whether each model reads an image at all
    result = inspect(pair, loaded.image, question, args.response, args.ablation, sampling, args.seed)
    notes = loaded.notes + notes + result.notes
    if args.json:
        print(json.dumps(result.to_dict() | {"notes": notes, "grounding": grounding.to_dict()}, indent=2))
        return 0
    for note in notes:
        print(f"note: {note}")
    print(f"question: {question}   (ablation: {args.ablation})")
    for key, text in result.answers.items():
        print(f"  {key:<18} {text}")
    print(f"\nscored response: {result.response!r}\n")
    print(_token_table(result.decomposition.rows(0)))
    return 0


# The run's settings offered as flags; each flag's type, default, range and help come from the config field.
GEOMETRY_SETTINGS = ("seed", "batch", "bins", "ablation", "max_new_tokens")
RUN_SETTINGS = (
    "steps",
    "lr",
    "batch",
    "ablation",
    "geometry_every",
    "eval_every",
    "eval_examples",
    "samples_per_prompt",
    "answer_pattern",
    "eval_samples",
    "max_new_tokens",
    "eval_max_new_tokens",
    "lora_rank",
    "gradient_checkpointing",
    "decompose_every",
    "gamma",
    "lam",
    "eta",
    "eta_every",
    "estimator",
)


def _distill_config(args, rule: str, seed: int):
    from vlod_core.distill import DistillConfig

    return settings.build(DistillConfig, settings.from_arguments(args, RUN_SETTINGS) | {"rule": rule, "seed": seed})


def _build_reasoning(args) -> int:
    from vlod_core.toy.reasoning_build import ReasoningBuildConfig, build_reasoning_pair, default_reasoning_dir

    out = Path(args.out) if args.out else default_reasoning_dir()
    config = ReasoningBuildConfig(seed=args.seed)
    card = build_reasoning_pair(out, config, progress=_progress_printer("building the reasoning pair"))
    print(f"wrote {out} in {card['build_seconds']} s (chains of {card['mean_answer_tokens']} tokens on average)")
    for name in ("teacher", "student", "student_blind"):
        m = card[name]
        print(
            f"  {name:<14} final-answer accuracy with image {m['accuracy_image']:.3f}   without {m['accuracy_no_image']:.3f}"
            f"   format errors {m['format_errors_image']}"
        )
    r = card["regime"]
    print(
        f"  step 0: |g_lang|/|g_vis| {r['lang_vis_ratio']:.2f}   angle(std, lang) {r['angles']['std-lang']:.1f}°"
        f"   angle(std, vis) {r['angles']['std-vis']:.1f}°   angle(lang, vis) {r['angles']['lang-vis']:.1f}°"
    )
    return 0


def _degrees(value: float) -> str:
    return f"{value:>11.1f}°" if value == value else f"{'n/a':>12}"  # n/a: a gradient is zero there


def cmd_geometry(args) -> int:
    from vlod_core.geometry_batch import GeometryConfig, batch_geometry
    from vlod_core.results import json_safe
    from vlod_core.sampling import SamplingConfig

    config = settings.build(GeometryConfig, settings.from_arguments(args, GEOMETRY_SETTINGS))
    if args.data:
        source = _read(args.data, args, "data").rows
        rows = [source[(args.seed + i) % len(source)] for i in range(min(args.batch, len(source)))]
    else:
        from vlod_core.toy.source import ToyPrompts

        rows = ToyPrompts(args.world).prompts(0, args.batch, args.seed)
    pair = _load_pair(args)
    images, questions = [row.load_image() for row in rows], [row.question for row in rows]
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
    geometry = batch_geometry(
        pair, images, questions, seed=config.seed, sampling=sampling, ablation=config.ablation, bins=config.bins
    )
    if args.json:
        print(json.dumps(json_safe(geometry.to_dict()), indent=2))
        return 0
    g = geometry.global_
    print("norms   " + "   ".join(f"|g_{k}| {v:.4f}" for k, v in g["norms"].items()))
    print("angles  " + "   ".join(f"{k} {v:6.1f}°" for k, v in g["angles"].items()))
    print(f"\n{'group':<22}" + "".join(f"{k:>12}" for k in g["angles"]))
    for name, block in geometry.groups.items():
        print(f"{name:<22}" + "".join(_degrees(v) for v in block["angles"].values()))
    if geometry.bins:
        print(f"\n{'VDS bin':<22}" + "".join(f"{k:>12}" for k in g["angles"]))
        for b in geometry.bins:
            label = f"{b['vds_low']:.2g} to {b['vds_high']:.2g}"
            print(f"{label:<22}" + "".join(_degrees(v) for v in b["angles"].values()))
    return 0


def _nats(value: float) -> str:
    """A logged loss, or "—" on a step that did not score it (ℓLang and ℓVis need the image-free pass, which a
    `standard` run scores every `decompose_every` steps only)."""
    return f"{value:.4f}" if math.isfinite(value) else "—"


def _record_printer(total: int):
    line = _ProgressLine()

    def report(record) -> None:
        extra = ""
        if record.evaluation:
            key = headline(record.evaluation)
            extra = f"  {key} {record.evaluation[key + '_image']:.3f} / {record.evaluation[key + '_no_image']:.3f}"
        text = (
            f"step {record.step}/{total}  loss {record.loss:.4f}  std {record.std:.4f}  lang {_nats(record.lang)}"
            f"  vis {_nats(record.vis)}  η {record.eta:.3f}{extra}   "
        )
        line.show(text, key=10 * record.step // total, end=record.step == total or bool(record.evaluation))

    return report


def _with_error(block: dict, name: str) -> str:
    value, error = block.get(name, float("nan")), block.get("stderr", {}).get(name, float("nan"))
    return f"{value:.3f} ± {error:.3f}"


def _evaluation_lines(before: dict, after: dict | None = None) -> list[str]:
    lines = []
    for metric in METRICS.values():
        for suffix, context in CONTEXTS.items():
            name = f"{metric.name}_{suffix}"
            if name not in before:
                continue
            text = f"  {metric.label}, {context}: {_with_error(before, name)}"
            if after is not None:
                change = after[name] - before[name]
                unit = f"{100 * change:+.1f} points" if metric.rate else f"{change:+.3f}"
                text += f" -> {_with_error(after, name)}  ({unit})"
            lines.append(text)
    if before.get("eval_seen_in_training"):
        lines.append("  (evaluated on rows seen in training: the set is too small to hold rows out)")
    return lines


def cmd_distill(args) -> int:
    from vlod_core.distill import distill

    config = _distill_config(args, args.rule, args.seed)
    data = _training_data(args)
    pair = _load_pair(args, training=True)
    grounding = _grounding(args, pair, data.eval_rows)
    result = distill(pair, config, data, callback=_record_printer(config.steps), grounding=grounding)
    card = result.card
    if result.card.stopped:
        print(f"note: {card.stopped}", file=sys.stderr)
    if args.out:
        card.save(args.out)
    if args.save_student:  # with --lora: the adapters only (peft's format, safetensors)
        result.student.save_pretrained(args.save_student)
        pair.processor.save_pretrained(args.save_student)
    print(f"{args.rule}: {len(card.records)} steps in {card.seconds:.1f} s on {card.data.get('name', 'data')}")
    print(f"evaluated on {card.after.get('eval_rows', 0)} rows ({card.data.get('split', '')}):")
    print("\n".join(_evaluation_lines(card.before, card.after)))
    if args.out:
        print(f"  run card: {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from vlod_core.evaluation import EvalSet, evaluate, teacher_accuracy

    if args.data:
        data = _read(args.data, args, "data")
        rows, name = data.rows, data.name
    else:
        from vlod_core.toy.source import held_out_rows

        rows, name = held_out_rows(args.eval_examples, args.world), f"toy world ({args.world})"
    eval_set = EvalSet(
        rows,
        ablation=args.ablation,
        max_new_tokens=args.eval_max_new_tokens,
        answer_pattern=args.answer_pattern,
        samples=args.eval_samples,
    )
    pair = _load_pair(args)
    grounding = _grounding(args, pair, rows)
    sys.stderr.write(f"evaluating on {len(rows)} rows of {name}\n")
    printer = _progress_printer("evaluating")
    progress = None if args.json else (lambda done, total: printer(f"{done}/{total} rows", done / total))
    student = evaluate(pair, eval_set, progress=progress, check_grounding=False)
    teacher = teacher_accuracy(pair, eval_set)
    if args.json:
        from vlod_core.results import json_safe

        out = {"rows": len(rows), "teacher": teacher, "student": student.to_dict(), "grounding": grounding.to_dict()}
        print(json.dumps(json_safe(out), indent=2))
        return 0
    print(f"{len(rows)} rows of {name}")
    if teacher:
        print("teacher:")
        for metric in ("accuracy", "format_errors"):
            for suffix, context in CONTEXTS.items():
                if f"{metric}_{suffix}" in teacher:
                    value, error = teacher[f"{metric}_{suffix}"], teacher[f"{metric}_{suffix}_stderr"]
                    print(f"  {METRICS[metric].label}, {context}: {value:.3f} ± {error:.3f}")
    print("student:")
    print("\n".join(_evaluation_lines(student.to_dict())))
    return 0


def cmd_compare(args) -> int:
    import statistics

    from vlod_core.distill import distill
    from vlod_core.verdict import verdict

    rules = args.rules.split(",")
    for rule in rules:
        _distill_config(args, rule, 0)  # a bad setting (an unknown rule, a bad pattern) fails before loading
    data = _training_data(args)
    pair = _load_pair(args, training=True)
    grounding = _grounding(args, pair, data.eval_rows)
    rows = []
    for rule in rules:
        results = []
        for seed in range(args.seeds):
            config = _distill_config(args, rule, seed)
            sys.stderr.write(f"{rule}, seed {seed}\n")
            card = distill(pair, config, data, callback=_record_printer(config.steps), grounding=grounding).card
            results.append(card)
            if args.out_dir:
                Path(args.out_dir).mkdir(parents=True, exist_ok=True)
                card.save(Path(args.out_dir) / f"{rule}-seed{seed}.json")
        rows.append((rule, results))

    def spread(values: list[float]) -> str:
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.3f} ± {sd:.3f}"

    key = headline(rows[0][1][0].before)
    print(f"{key} (mean ± standard deviation over {args.seeds} seeds)")
    header = f"{'rule':<14}{'before (img)':>16}{'after (img)':>16}{'after (no img)':>17}{'steps to +5 pts':>18}{'seconds':>9}"
    print(header)
    print("-" * len(header))
    for rule, cards in rows:
        reach = [steps_to_gain(c, key) for c in cards]
        reach_text = ",".join("-" if r is None else str(r) for r in reach)
        print(
            f"{rule:<14}{spread([c.before[key + '_image'] for c in cards]):>16}"
            f"{spread([c.after[key + '_image'] for c in cards]):>16}"
            f"{spread([c.after[key + '_no_image'] for c in cards]):>17}{reach_text:>18}"
            f"{statistics.fmean(c.seconds for c in cards):>9.1f}"
        )
    print(verdict(dict(rows)).text())
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _experiments_printer():
    """One progress line on stderr: the share of the estimated work done, runs, ETA and the runs in flight."""
    ended = [False]
    line = _ProgressLine()

    def report(progress) -> None:
        if ended[0]:
            return
        filled = int(30 * progress.fraction)
        running = "; ".join(progress.running)
        text = (
            f"experiments: [{'#' * filled}{'.' * (30 - filled)}] {progress.fraction:5.1%} "
            f"{progress.done}/{progress.total} runs, ETA {_duration(progress.eta_seconds):<7} {running[:70]:<70}"
        )
        ended[0] = progress.done == progress.total
        line.show(text, key=progress.done, end=ended[0])

    return report


def cmd_rules(args) -> int:
    """The update rules as a Markdown table: the README's table is this output."""
    from vlod_core.steering import REGISTRY

    print("| rule | descends | what it is |\n|---|---|---|")
    for rule in REGISTRY.values():
        print(f"| `{rule.name}` | {rule.objective} | {rule.description} |")
    return 0


def cmd_experiments(args) -> int:
    import shlex

    from vlod_core.experiments import default_out_dir, estimate_seconds, plan_named, run_experiments
    from vlod_core.experiments.plan import for_world
    from vlod_core.experiments.worlds import measured_text

    if args.side_by_side:
        return _side_by_side(args.side_by_side)
    plan = plan_named("quick" if args.quick else "full")
    if args.seeds is not None:
        plan = plan.with_seeds(args.seeds)
    plan = dataclasses.replace(
        plan,
        answer_pattern=args.answer_pattern,
        eval_samples=args.eval_samples,
        world=args.world,
        **{name: getattr(args, name) for name in ("max_new_tokens", "eval_max_new_tokens") if hasattr(args, name)},
    )
    plan = for_world(plan)
    if not 0 <= args.workers <= 64:
        raise ValueError(f"--workers must be between 0 (run here) and 64, got {args.workers}")
    args.eval_examples = plan.eval_examples  # the toy world's held-out rows
    data = _training_data(args)
    pair, folders = _located_pair(args)  # checks the pair (and builds the toy pair) before any worker starts
    if args.workers:
        pair = None  # each worker loads its own
    out = Path(args.out) if args.out else default_out_dir(plan)
    estimate = estimate_seconds(plan, args.workers, len(data.eval_rows))
    sys.stderr.write(
        f"paper check, plan '{plan.name}': {estimate['runs']} runs ({plan.seeds} seeds), about "
        f"{_duration(estimate['wall_seconds'])} on {max(args.workers, 1)} quiet core(s); cached runs are skipped; "
        f"output in {out}\n"
    )
    command = "python -m vlod_core " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["experiments"] else ""
    try:
        result = run_experiments(
            plan,
            _pair_spec(args),
            data,
            out,
            workers=args.workers,
            pair=pair,
            folders=folders,
            progress=_experiments_printer(),
            command=command,
        )
    except KeyboardInterrupt:
        sys.stderr.write(f"\nvlod: interrupted; finished runs are cached in {out / 'runs'}: rerun to resume\n")
        return 130
    results = result.results
    print(
        f"{result.executed} runs computed, {result.cached} found in the cache ({results['timing']['wall_seconds']:.0f} s)"
    )
    width = max(len(c["claim"]) for c in results["claims"])
    for claim in results["claims"]:
        print(f"{claim['verdict']:<13} {claim['claim']:<{width}}  paper {claim['paper']}; ours {measured_text(claim)}")
    print(f"learning rates: {results['experiments']['learning_rate']['answer']}")
    print(f"results: {result.results_path}\nreport:  {result.report_path}")
    return 0


def _side_by_side(folders: list[str]) -> int:
    """Print the claims of two or more worlds' reports side by side (Markdown), without running anything."""
    from vlod_core.experiments import load_results
    from vlod_core.experiments.check import RESULTS
    from vlod_core.experiments.worlds import side_by_side_markdown

    reports = [load_results(Path(f) / RESULTS if Path(f).is_dir() else Path(f)) for f in folders]
    print(side_by_side_markdown(reports))
    return 0


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    from vlod_core.distill import DistillConfig

    settings.add_arguments(parser, DistillConfig, RUN_SETTINGS)
    _add_data_args(parser)
    _add_pair_args(parser)
    _add_grounding_arg(parser)


def build_parser() -> argparse.ArgumentParser:
    from vlod_core.distill import DistillConfig
    from vlod_core.geometry_batch import GeometryConfig
    from vlod_core.sampling import SamplingConfig
    from vlod_core.steering import REGISTRY

    parser = argparse.ArgumentParser(prog="vlod", description="Decomposed on-policy distillation of VLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", required=True)

    toy = commands.add_parser("toy", help="the embedded toy world").add_subparsers(dest="toy_command", required=True)
    build = toy.add_parser("build", help="train and save the toy teacher/student pair")
    build.add_argument("--out", help="folder (default: $VLOD_HOME/toy or ~/.cache/vlod/toy)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--world",
        default="default",
        choices=["default", "reasoning"],
        help="reasoning: chains over several visual facts, a teacher and student of two styles "
        "(default folder $VLOD_HOME/toy-reasoning)",
    )
    build.set_defaults(func=cmd_toy_build)

    inspect = commands.add_parser("inspect", help="four answers and the per-token decomposition")
    inspect.add_argument("--image", required=True, help="an image file")
    inspect.add_argument("--question", required=True)
    inspect.add_argument("--response", help="score this answer instead of the student's sample")
    settings.add_arguments(inspect, DistillConfig, ("ablation", "seed"))
    settings.add_arguments(inspect, SamplingConfig, ("temperature", "top_p", "max_new_tokens"))
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    _add_pair_args(inspect)
    inspect.set_defaults(func=cmd_inspect)

    geometry = commands.add_parser("geometry", help="norms and angles of g_std, g_lang, g_vis on one batch")
    settings.add_arguments(geometry, GeometryConfig, GEOMETRY_SETTINGS)
    geometry.add_argument("--json", action="store_true")
    _add_data_args(geometry, evaluation=False)
    _add_pair_args(geometry)
    geometry.set_defaults(func=cmd_geometry)

    run = commands.add_parser("distill", help="on-policy distillation with one update rule; writes a run card")
    settings.add_arguments(run, DistillConfig, ("rule", "seed"))
    run.add_argument("--out", help="run card path (JSON)")
    run.add_argument("--save-student", help="save the distilled student here (safetensors folder)")
    _add_run_args(run)
    run.set_defaults(func=cmd_distill)

    evaluation = commands.add_parser("evaluate", help="measure a pair on a data set without training")
    settings.add_arguments(
        evaluation,
        DistillConfig,
        ("eval_examples", "ablation", "eval_max_new_tokens", "answer_pattern", "eval_samples"),
    )
    evaluation.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(evaluation, evaluation=False)
    _add_pair_args(evaluation)
    _add_grounding_arg(evaluation)
    evaluation.set_defaults(func=cmd_evaluate)

    compare = commands.add_parser("compare", help="several rules from identical seeds; one table")
    compare.add_argument("--rules", default="standard,vgs", help=f"comma-separated, from {', '.join(REGISTRY)}")
    compare.add_argument("--seeds", type=int, default=3)
    compare.add_argument("--out-dir", help="also save every run card here")
    _add_run_args(compare)
    compare.set_defaults(func=cmd_compare)

    rules = commands.add_parser("rules", help="the update rules (name, the terms it descends, what it is)")
    rules.set_defaults(func=cmd_rules)

    experiments = commands.add_parser(
        "experiments", help="check the paper's claims: every experiment, with seeds, error bars and verdicts"
    )
    experiments.add_argument(
        "--quick", action="store_true", help="3 seeds, fewer steps and sweep points (~5 min; the reasoning world: ~10)"
    )
    experiments.add_argument("--seeds", type=int, help="seeds per configuration (default: the plan's, 3)")
    experiments.add_argument("--out", help="output folder (default: $VLOD_HOME/experiments/quick or .../full)")
    experiments.add_argument("--workers", type=int, default=2, help="worker processes, one per core (0: run here)")
    experiments.add_argument(
        "--side-by-side",
        nargs="+",
        metavar="REPORT",
        help="run nothing: print the claims of these reports (folders or results.json files, one per world) side "
        "by side, as Markdown",
    )
    settings.add_arguments(
        experiments, DistillConfig, ("answer_pattern", "eval_samples", "max_new_tokens", "eval_max_new_tokens")
    )
    _add_data_args(experiments)
    _add_pair_args(experiments)
    experiments.set_defaults(func=cmd_experiments)
    return parser


def _use_world(args, parser: argparse.ArgumentParser) -> None:
    """A toy world other than the default: its pair where the toy pair was meant, and the settings its answers
    need where the command line left the default (a value equal to the default counts as left)."""
    from vlod_core.toy import TOY_REASONING
    from vlod_core.toy.source import world_settings

    args.teacher = TOY_REASONING if args.teacher == TOY else args.teacher
    args.student = TOY_REASONING if args.student == TOY else args.student
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    for name, value in world_settings(args.world).items():
        if hasattr(args, name) and getattr(args, name) == sub.get_default(name):
            setattr(args, name, value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        if getattr(args, "world", "default") != "default" and args.command != "toy":
            _use_world(args, parser)
        return args.func(args)
    except (PairError, ImageError, ValueError, OSError) as error:  # the user can fix these: one line, no traceback
        print(f"vlod: error: {error}", file=sys.stderr)
        return EXIT_USAGE
