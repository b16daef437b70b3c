"""Page 3's result tables (`vlod_app.run_view`), from hand-made run cards: no model needed."""

from __future__ import annotations

from vlod_app.run_view import answer_rows, evaluated_on, headline_metric, metric_rows, student_download
from vlod_core.results import RunCard

NAMES = ("agreement", "token_agreement", "kl")


def block(value: float, rows: int, seen: bool, accuracy: bool = False) -> dict:
    names = NAMES + (("accuracy",) if accuracy else ())
    values = {f"{n}_{c}": value for n in names for c in ("image", "no_image")}
    return values | {
        "stderr": {k: 0.1 for k in values},
        "per_category": {},
        "eval_rows": rows,
        "eval_seen_in_training": seen,
    }


def card(before: float, after: float, answers_after: list[str], seen=True, held=None, accuracy=False) -> RunCard:
    shown = [
        {"question": f"q{i} ?", "label": "", "thumbnail": "", "image": "a", "no_image": "", "teacher_image": "t",
         "teacher_no_image": "u"}
        for i in range(len(answers_after))
    ]  # fmt: skip
    after_rows = [dict(row, image=answer) for row, answer in zip(shown, answers_after)]
    data = {"eval_rows": 2, "eval_seen_in_training": seen} | ({"shown_held_out": held} if held is not None else {})
    return RunCard(
        config={}, versions={}, pair={}, seconds=1.0, records=[], data=data,
        before=block(before, 2, seen, accuracy), after=block(after, 2, seen, accuracy),
        answers_before=shown, answers_after=after_rows,
    )  # fmt: skip


def test_rows_without_right_answers_have_no_accuracy_row_and_every_number_its_error():
    cards = {"standard": card(0.25, 0.75, ["b", "c"], held=2), "vgs": card(0.25, 0.5, ["a", "c"], held=2)}
    assert headline_metric(cards) == "agreement"
    table = metric_rows(cards)
    assert len(table) == 2 * len(NAMES) and not table["metric"].str.startswith("accuracy").any()
    first = table.iloc[0]
    assert (first["with image, before"], first["with image, after"]) == ("0.250 ± 0.100", "0.750 ± 0.100")
    assert evaluated_on(cards) == "on 2 rows seen in training (too few to hold any out)"


def test_every_shown_row_beside_the_teacher_with_how_it_was_used():
    cards = {"standard": card(0.0, 1.0, ["b", ""], seen=False, held=1, accuracy=True)}
    assert headline_metric(cards) == "accuracy"
    rows = answer_rows(cards)
    assert list(rows["used as"]) == ["held out", "train"]
    assert list(rows["teacher (image)"]) == ["t", "t"] and list(rows["before (image)"]) == ["a", "a"]
    assert list(rows["standard (image)"]) == ["b", "(empty)"]  # an empty answer is said, not left blank
    assert list(rows["before (no image)"]) == ["(empty)", "(empty)"]
    assert evaluated_on(cards) == "on 2 held-out rows"


def test_a_lora_runs_student_download_says_it_holds_the_adapters_only():
    import dataclasses

    whole = card(0.5, 0.6, ["a"])
    adapters = dataclasses.replace(whole, config={"lora_rank": 4})
    label, explained = student_download("vgs", whole)
    assert label == "Distilled student (vgs, zip)" and "whole trained student" in explained
    label, explained = student_download("vgs", adapters)
    assert "LoRA adapters" in label and "rank 4" in label and "PeftModel.from_pretrained" in explained
