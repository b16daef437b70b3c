"""The grounding check's numbers on the toy pair: the working pair, the teacher with a zeroed projector, the
blind student; own greedy answers and the rows' references, toy held-out rows and the shipped example set.

    python bench/grounding_figures.py [--rows 8] [--sets 5]

Prints one line per (model, answers, row set): kl_other, kl_blank (nats per token). What the README's
threshold was chosen from.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from vlod_core import toy
from vlod_core.grounding import measure, model_name, pick_rows
from vlod_core.pair import PairSpec, load_pair
from vlod_core.sources import load_data
from vlod_core.toy.source import held_out_rows


def zeroed_projector(model):
    blind = copy.deepcopy(model)
    with torch.no_grad():
        for p in blind.model.multi_modal_projector.parameters():
            p.zero_()
    return blind


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--sets", type=int, default=5, help="disjoint sets of held-out toy rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    blind_spec = PairSpec(student_variant="student_blind")
    pair = load_pair(PairSpec(), toy.folders(PairSpec()))
    blind_pair = load_pair(blind_spec, toy.folders(blind_spec))
    toy_rows = held_out_rows(args.rows * args.sets)
    row_sets = {f"toy rows {i}": toy_rows[i * args.rows : (i + 1) * args.rows] for i in range(args.sets)}
    examples = load_data(Path(__file__).resolve().parents[1] / "examples" / "shapes").rows
    row_sets["examples/shapes"] = pick_rows(examples, args.rows)
    models = [
        ("teacher", pair.teacher, pair.teacher_inputs_processor, model_name(pair, "teacher")),
        ("teacher", zeroed_projector(pair.teacher), pair.teacher_inputs_processor, "toy teacher, zeroed projector"),
        ("student", pair.student, pair.processor, model_name(pair, "student")),
        ("student", blind_pair.student, pair.processor, model_name(blind_pair, "student")),
    ]
    print(f"{'model':<32}{'answers':<20}{'rows':<18}{'kl_other':>10}{'kl_blank':>10}{'kl':>8}{'seconds':>9}")
    for role, model, processor, name in models:
        for answers in ("own", "reference"):
            for label, rows in row_sets.items():
                started = time.perf_counter()
                g = measure(
                    model, processor, pair.tokenizer, pair.vocab_size, rows, role=role, name=name, answers=answers
                )
                other = f"{g.kl_other:.3g}" if g.kl_other is not None else "n/a"
                print(
                    f"{name:<32}{g.answers:<20}{label:<18}{other:>10}{g.kl_blank:>10.3g}{g.kl:>8.3g}{time.perf_counter() - started:>9.2f}"
                )


if __name__ == "__main__":
    main()
