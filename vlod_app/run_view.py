"""What page 3 shows of finished runs, as plain tables: the numbers before and after, and every shown row.

Pure functions of run cards (`vlod_core.results.RunCard`), so the page only draws them, and a test can check
them without a browser. Every number comes from the card's `before`/`after` Evaluation dicts
(`vlod_core.evaluation`), with the standard error it carries (`vlod_core.figures.accuracy_text`).
"""

from __future__ import annotations

import pandas as pd

from vlod_core.answers import is_correct
from vlod_core.distill import DistillConfig
from vlod_core.figures.runs import accuracy_text
from vlod_core.memory import GIB, estimate_training_memory
from vlod_core.results import RunCard
from vlod_core.run_summary import METRICS, headline
from vlod_core.verdict import verdict


def headline_metric(cards: dict[str, RunCard]) -> str:
    """'accuracy' when the evaluation rows have right answers (the toy world always has), else 'agreement'."""
    if not cards:
        return "accuracy"
    return headline(*(block for card in cards.values() for block in (card.before, card.after)))


def live_status(snapshot: dict[str, dict]) -> str:
    """What each running rule is doing, from a job's snapshot (rules side by side run at once): measuring
    before, a step count, or measuring after."""
    parts = []
    for rule, run in snapshot.items():
        if run["state"] != "running":
            continue
        done = len(run["records"])
        if done == 0:
            parts.append(f"{rule}: measuring the student before training…")
        elif done >= run["steps"]:
            parts.append(f"{rule}: measuring the student after training…")
        else:
            parts.append(f"{rule}: step {done} of {run['steps']}")
    return " · ".join(parts) or "finishing…"


def verdict_markdown(cards: dict[str, RunCard], not_run: list[str]) -> str:
    """The run's verdict in words (`vlod_core.verdict`): the line in bold, then what it rests on."""
    result = verdict({rule: [card] for rule, card in cards.items()} | {rule: [] for rule in not_run})
    lines = [f"**Verdict: {result.line().removeprefix('verdict: ')}.**"]
    return "\n".join(lines + [f"- {reason}" for reason in result.reasons])


def summary_frame(cards: dict[str, RunCard], not_run: list[str], failed: list[str]) -> pd.DataFrame:
    """The results table: each rule's state, steps, seconds and headline metric before and after, with the
    image and without (± one SE); a rule that never ran or failed has '–' where it has no number, never None."""
    name = headline_metric(cards)
    rows = []
    for rule, card in cards.items():
        rows.append(
            {
                "rule": rule,
                "state": f"stopped after {len(card.records)} steps" if card.stopped else "done",
                "steps": len(card.records),
                "seconds": f"{card.seconds:g}",
                "with image, before": accuracy_text(card.before, f"{name}_image"),
                "with image, after": accuracy_text(card.after, f"{name}_image"),
                "without image, before": accuracy_text(card.before, f"{name}_no_image"),
                "without image, after": accuracy_text(card.after, f"{name}_no_image"),
            }
        )
    rows += [{"rule": rule, "state": "not run", "steps": 0} for rule in not_run]
    rows += [{"rule": rule, "state": "failed", "steps": 0} for rule in failed]
    return pd.DataFrame(rows).fillna("–")


def card_with_verdict(card: RunCard, cards: dict[str, RunCard], not_run: list[str]) -> dict:
    """A run card to download, with the run's verdict in words beside the numbers when it compared rules."""
    plain = card.to_dict()
    if len(cards) + len(not_run) > 1:
        result = verdict({rule: [c] for rule, c in cards.items()} | {rule: [] for rule in not_run})
        plain["verdict"] = {"line": result.line(), "reasons": list(result.reasons)}
    return plain


def metric_rows(cards: dict[str, RunCard]) -> pd.DataFrame:
    """One row per rule and metric measured: before and after, with the image and without, ± one standard error."""
    rows = []
    for rule, card in cards.items():
        for name, metric in METRICS.items():
            if f"{name}_image" not in card.before and f"{name}_image" not in card.after:
                continue  # accuracy is absent, not 0, when the rows have no right answers
            rows.append(
                {
                    "rule": rule,
                    "metric": metric.label,
                    "with image, before": accuracy_text(card.before, f"{name}_image"),
                    "with image, after": accuracy_text(card.after, f"{name}_image"),
                    "without image, before": accuracy_text(card.before, f"{name}_no_image"),
                    "without image, after": accuracy_text(card.after, f"{name}_no_image"),
                }
            )
    return pd.DataFrame(rows)


def evaluated_on(cards: dict[str, RunCard]) -> str:
    """'on 5 held-out rows' or 'on 4 rows seen in training' — said wherever the numbers appear."""
    card = next(iter(cards.values()), None)
    if card is None:
        return ""
    block = card.after or card.before
    rows = block.get("eval_rows", card.data.get("eval_rows"))
    seen = block.get("eval_seen_in_training", card.data.get("eval_seen_in_training", False))
    if rows is None:
        return ""
    return f"on {rows} rows seen in training (too few to hold any out)" if seen else f"on {rows} held-out rows"


def shows_every_row(card: RunCard) -> bool:
    """Whether the card's shown rows are a user's whole set (the app's "my images"), not a few toy samples."""
    return "shown_held_out" in card.data


def _said(answer: str) -> str:
    return answer if answer.strip() else "(empty)"


def _marked(answer: str, reference: str) -> str:
    """An answer with ✓ or ✗ when the row has a right answer (the evaluation's own test), else as it is."""
    if not reference:
        return _said(answer)
    return f"{'✓' if is_correct(answer, reference) else '✗'} {_said(answer)}"


def answer_rows(cards: dict[str, RunCard]) -> pd.DataFrame:
    """Every shown row: image, question, then with the image the student before, each rule's student after
    and the teacher side by side (so they are in view on a projector), then the same without the image, then
    the right answer and how the row was used. Where a row has a right answer, each answer is marked ✓ or ✗."""
    first = next(iter(cards.values()))
    held = first.data.get("shown_held_out")
    seen = first.data.get("eval_seen_in_training", False)
    table = []
    for i, before in enumerate(first.answers_before):
        reference = before.get("reference", "") or ""
        row = {"image": before.get("thumbnail"), "question": before["question"]}
        for context in ("image", "no_image"):
            words = "image" if context == "image" else "no image"
            row[f"before ({words})"] = _marked(before[context], reference)
            for rule, card in cards.items():
                if i < len(card.answers_after):
                    row[f"{rule} ({words})"] = _marked(card.answers_after[i][context], reference)
            if f"teacher_{context}" in before:
                row[f"teacher ({words})"] = _marked(before[f"teacher_{context}"], reference)
        row["right answer"] = reference
        if held is not None:
            row["used as"] = "train + eval (seen in training)" if seen else ("held out" if i < held else "train")
        table.append(row)
    return pd.DataFrame(table)


def changed_answer_lines(card: RunCard, diff) -> list[str]:
    """Markdown lines for the answers with the image that training changed, each marked right or wrong after
    the change where the row has a right answer (`diff`: the page's word diff)."""
    lines = []
    for before, after in zip(card.answers_before, card.answers_after):
        if before["image"] == after["image"]:
            continue
        line = f"- “{after['question']}”: {diff(before['image'], after['image'])}"
        reference = before.get("reference") or ""
        if reference:
            was, now = is_correct(before["image"], reference), is_correct(after["image"], reference)
            line += f" — {'✓ right' if now else '✗ wrong'} (before: {'right' if was else 'wrong'}; “{reference}”)"
        lines.append(line)
    return lines


def student_download(rule: str, card: RunCard) -> tuple[str, str]:
    """(label, help) of the trained student's download: a LoRA run saved its adapters only, and says so."""
    rank = card.config.get("lora_rank", 0)
    if rank:
        explained = (
            "The adapters only (PEFT's adapter_model.safetensors and adapter_config.json), not a whole model: "
            "load the student as it was, then peft.PeftModel.from_pretrained(student, folder)."
        )
        return f"Student's LoRA adapters ({rule}, rank {rank}, zip)", explained
    return f"Distilled student ({rule}, zip)", "The whole trained student as safetensors, with its processor."


def memory_text(pair, batch: int, lora_rank: int, prompt_tokens: int) -> str:
    """`vlod_core.memory`'s estimate of what a run with these settings needs, for the loaded pair."""
    response = DistillConfig().sampling.max_new_tokens
    estimate = estimate_training_memory(
        pair.teacher.config,
        pair.student.config,
        next(pair.student.parameters()).dtype,
        batch,
        (max(prompt_tokens, 1), response),
        lora_rank or None,
    )
    what = (
        f"LoRA rank {lora_rank}: {estimate.trainable_parameters:,} trainable parameters"
        if lora_rank
        else (f"every weight trained: {estimate.trainable_parameters:,} parameters")
    )
    return (
        f"Memory for this run, estimated: about {_size(estimate.total)} on {pair.device.type} "
        f"({what}; {estimate.describe()}; prompts of {prompt_tokens} tokens, answers of {response})."
    )


def _size(size: int) -> str:
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / 2**20:.1f} MiB"


def prompt_tokens(pair, image, question: str) -> int:
    """Tokens of one encoded prompt (image tokens included) for the student, as the memory estimate counts."""
    from vlod_core.engine import encode

    prompts = encode(pair, [image], [question], contexts=("image",))
    return int(prompts.encoded[("student", "image")]["input_ids"].shape[1])
