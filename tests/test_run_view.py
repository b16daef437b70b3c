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


def test_a_rule_that_never_ran_shows_a_dash_not_none_and_the_card_carries_the_verdict():
    """Issue 21, item 7: the results table said "None" for a rule that never ran."""
    from vlod_app.run_view import card_with_verdict, summary_frame

    cards = {"standard": card(0.5, 0.7, ["a"], accuracy=True)}
    frame = summary_frame(cards, ["vgs"], [])
    assert list(frame["rule"]) == ["standard", "vgs"] and frame["state"].iloc[1] == "not run"
    cells = frame.iloc[1].astype(str)
    assert not cells.isin(["None", "nan", "NaN", "<NA>"]).any(), cells.to_dict()
    assert frame["with image, after"].iloc[0] == "0.700 ± 0.100"
    plain = card_with_verdict(cards["standard"], cards, ["vgs"])
    assert plain["verdict"]["line"].startswith("verdict: ") and "vgs" in plain["verdict"]["line"]
    assert "verdict" not in card_with_verdict(cards["standard"], cards, [])  # one rule: nothing to compare
    assert {k: v for k, v in plain.items() if k != "verdict"} == cards["standard"].to_dict()  # nothing else changed


def test_every_row_marks_answers_right_or_wrong_and_keeps_before_after_teacher_together():
    """Issue 21: the per-row table's after columns hid behind a horizontal scroll, and changed answers were not
    marked right or wrong where rows have right answers."""
    from vlod_app.run_view import changed_answer_lines

    cards = {"standard": card(0.5, 0.7, ["blue", "it is blue the triangle"], held=1)}
    for row in cards["standard"].answers_before:
        row["reference"] = "blue"
    table = answer_rows(cards)
    columns = list(table.columns)
    assert columns[:5] == ["image", "question", "before (image)", "standard (image)", "teacher (image)"]
    assert columns[-2:] == ["right answer", "used as"]
    assert list(table["standard (image)"]) == ["✓ blue", "✗ it is blue the triangle"]
    assert list(table["before (image)"]) == ["✗ a", "✗ a"]
    lines = changed_answer_lines(cards["standard"], lambda before, after: f"{before} → {after}")
    assert lines[0] == "- “q0 ?”: a → blue — ✓ right (before: wrong; “blue”)"
    assert "✗ wrong" in lines[1]
    plain = {"standard": card(0.5, 0.7, ["x"])}  # no right answers: nothing marked
    assert answer_rows(plain)["standard (image)"].iloc[0] == "x"


def test_csv_cells_of_value_and_error_become_two_number_columns():
    """Issue 21, item 7: a CSV had "0.720 ± 0.032" as text."""
    import pandas as pd

    from vlod_app.widgets import csv_frame

    frame = pd.DataFrame(
        {"rule": ["a", "b", "c"], "after": ["0.720 ± 0.032", "–", "0.5"], "note": ["1 ± 2 (n)", "", ""]}
    )
    out = csv_frame(frame)
    assert list(out.columns) == ["rule", "after", "after SE", "note"]
    assert out["after"].tolist()[0] == 0.72 and out["after SE"].tolist()[0] == 0.032
    assert out["after"].isna().tolist() == [False, True, False] and out["after SE"].isna().tolist() == [
        False,
        True,
        True,
    ]
    assert out["note"].tolist() == ["1 ± 2 (n)", "", ""]  # not only value ± error: left as text


def test_the_live_status_names_every_rule_running_side_by_side():
    from vlod_app.run_view import live_status

    snapshot = {
        "standard": {"state": "running", "steps": 10, "records": [{}] * 4},
        "vgs": {"state": "running", "steps": 10, "records": []},
        "lang_steer": {"state": "waiting", "steps": 10, "records": []},
    }
    assert live_status(snapshot) == "standard: step 4 of 10 · vgs: measuring the student before training…"
    snapshot["standard"]["records"] = [{}] * 10
    assert live_status(snapshot).startswith("standard: measuring the student after training…")
    assert live_status({"vgs": {"state": "done", "steps": 10, "records": [{}] * 10}}) == "finishing…"
