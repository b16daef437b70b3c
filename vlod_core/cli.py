"""The command line: the same things the app does, headless. `python -m vlod_core --help`.

Errors the user can fix (bad paths, bad images, bad numbers) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vlod_core.images import ImageError
from vlod_core.pair import TOY, PairError, PairSpec

EXIT_USAGE = 2


def _progress_printer(label: str):
    """A one-line progress bar on stderr (the library itself never prints)."""

    def report(stage: str, fraction: float) -> None:
        filled = int(30 * fraction)
        sys.stderr.write(f"\r{label}: [{'#' * filled}{'.' * (30 - filled)}] {fraction:5.1%} {stage:<28}")
        if fraction >= 1:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def _add_pair_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", default=TOY, help="teacher: a local folder, a Hub id, or 'toy' (default)")
    parser.add_argument("--student", default=TOY, help="student: a local folder, a Hub id, or 'toy' (default)")
    parser.add_argument("--blind-student", action="store_true", help="toy only: the text-only-trained student")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model's own code (off by default)")


def _pair_spec(args) -> PairSpec:
    return PairSpec(
        teacher=args.teacher,
        student=args.student,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        student_variant="student_blind" if args.blind_student else "student",
    )


def _load_pair(args):
    from vlod_core.pair import load_pair
    from vlod_core.toy.build import ensure_toy_pair

    if TOY in (args.teacher, args.student):
        ensure_toy_pair(progress=_progress_printer("building the toy pair (first use)"))
    return load_pair(_pair_spec(args))


def cmd_toy_build(args) -> int:
    from vlod_core.toy.build import ToyBuildConfig, build_toy_pair, default_toy_dir

    out = Path(args.out) if args.out else default_toy_dir()
    card = build_toy_pair(out, ToyBuildConfig(seed=args.seed), progress=_progress_printer("building the toy pair"))
    print(f"wrote {out} in {card['build_seconds']} s")
    for name in ("teacher", "student", "student_blind"):
        print(f"  {name:<14} accuracy with image {card[name]['accuracy_image']:.3f}   without {card[name]['accuracy_no_image']:.3f}")
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
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    result = inspect(pair, loaded.image, question, args.response, args.ablation, sampling, args.seed)
    notes = loaded.notes + notes + result.notes
    if args.json:
        print(json.dumps(result.to_dict() | {"notes": notes}, indent=2))
        return 0
    for note in notes:
        print(f"note: {note}")
    print(f"question: {question}   (ablation: {args.ablation})")
    for key, text in result.answers.items():
        print(f"  {key:<18} {text}")
    print(f"\nscored response: {result.response!r}\n")
    print(_token_table(result.decomposition.rows(0)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlod", description="Decomposed on-policy distillation of VLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", required=True)

    toy = commands.add_parser("toy", help="the embedded toy world").add_subparsers(dest="toy_command", required=True)
    build = toy.add_parser("build", help="train and save the toy teacher/student pair")
    build.add_argument("--out", help="folder (default: $VLOD_HOME/toy or ~/.cache/vlod/toy)")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=cmd_toy_build)

    inspect = commands.add_parser("inspect", help="four answers and the per-token decomposition")
    inspect.add_argument("--image", required=True, help="an image file")
    inspect.add_argument("--question", required=True)
    inspect.add_argument("--response", help="score this answer instead of the student's sample")
    inspect.add_argument("--ablation", default="remove", choices=["remove", "blank", "blur"])
    inspect.add_argument("--seed", type=int, default=0)
    inspect.add_argument("--temperature", type=float, default=1.0)
    inspect.add_argument("--top-p", type=float, default=1.0)
    inspect.add_argument("--max-new-tokens", type=int, default=8)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    _add_pair_args(inspect)
    inspect.set_defaults(func=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except (PairError, ImageError, ValueError) as error:
        print(f"vlod: error: {error}", file=sys.stderr)
        return EXIT_USAGE
