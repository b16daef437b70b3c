"""What page 3 draws of finished runs: what ran and what did not, the verdict, accuracies with standard errors,
curves, your image's and the held-out rows' answers before and after, and the downloads.

The numbers and tables come from `vlod_app.run_view` (pure functions of run cards, tested without a browser);
this module only lays them out, so a run opened from its link, a saved card and a finished job look the same.
"""

from __future__ import annotations

import json

import streamlit as st

from vlod_app.jobs import Job, student_zip
from vlod_app.run_view import (
    answer_rows,
    card_with_verdict,
    changed_answer_lines,
    evaluated_on,
    headline_metric,
    metric_rows,
    shows_every_row,
    student_download,
    summary_frame,
    verdict_markdown,
)
from vlod_app.widgets import View, diff_markdown, plain_markdown
from vlod_core.figures.runs import accuracy_bars, training_curves
from vlod_core.results import RunCard


def show_cards(view: View, cards: dict[str, RunCard], prefix: str, job: Job | None = None) -> None:
    """Results: what ran and what did not, accuracies with standard errors, curves, answers, downloads."""
    not_run = job.not_run() if job else []
    failed = {rule: run.error for rule, run in job.runs.items() if run.state == "failed"} if job else {}
    for rule, card in cards.items():
        if card.stopped and job and job.stop_reason:  # say why: the user, or nobody watching
            st.warning(f"**{rule}**: {job.stop_reason}, after {len(card.records)} steps.")
        elif card.stopped:
            st.warning(f"**{rule}**: {card.stopped}.")
    for rule in not_run:
        st.warning(f"**{rule}**: not run — the run ended before this rule started.")
    for rule, error in failed.items():
        st.error(f"**{rule}** failed: {error}")

    headline = headline_metric(cards)
    if headline == "accuracy":
        st.markdown(f"**Accuracy** (exact match, ± one standard error) {evaluated_on(cards)}")
    else:
        st.markdown(
            f"**Agreement with the teacher** (the student's greedy answer equals the teacher's; ± one standard "
            f"error) {evaluated_on(cards)}; your rows have no right answers, so there is no accuracy"
        )
    view.table(summary_frame(cards, not_run, list(failed)), f"{headline} before and after", key=f"{prefix}_summary")
    if not cards:
        return
    if len(cards) + len(not_run) + len(failed) > 1:
        st.markdown(verdict_markdown(cards, not_run + list(failed)))
    st.markdown(f"**Closeness to the teacher, before and after** ({evaluated_on(cards)}, ± one standard error)")
    view.table(metric_rows(cards), "metrics before and after", key=f"{prefix}_metrics")
    plain = {rule: card.to_dict() for rule, card in cards.items()}
    bars, answers = st.columns([3, 2], gap="large")
    with bars:
        if headline == "accuracy":  # rows without right answers: the closeness table above says it all
            view.chart(accuracy_bars(plain), "accuracy bars", key=f"{prefix}_accuracy_bars")
    with answers:
        st.markdown("**Your image, before → after** (greedy answers; changed words: red struck out, green new)")
        for rule, card in cards.items():
            for before, after in zip(card.probe_before, card.probe_after):
                st.caption(f"{rule} · “{after['question']}”")
                st.markdown(
                    f"with the image: {plain_markdown(before['image'])} → "
                    f"{diff_markdown(before['image'], after['image'])}  \n"
                    f"without: {plain_markdown(before['no_image'])} → "
                    f"{diff_markdown(before['no_image'], after['no_image'])}"
                )
    curves = {r: {"records": c.records, "before": c.before, "after": c.after} for r, c in cards.items()}
    view.chart(training_curves(curves), "training curves", key=f"{prefix}_final_curves")

    first = next(iter(cards.values()))
    if shows_every_row(first):
        st.subheader("Every row of your set, before and after")
        st.caption("Greedy answers; the teacher's beside them. Rows used as 'held out' were never trained on.")
    else:
        st.subheader("Fixed held-out samples, before and after")
    if first.answers_before:
        view.table(
            answer_rows(cards),
            "answers before and after",
            column_config={"image": st.column_config.ImageColumn("image", width="small")},
            key=f"{prefix}_held_out",
        )
        for rule, card in cards.items():
            lines = changed_answer_lines(card, diff_markdown)
            st.markdown(
                f"**{rule}**, answers with the image that changed:\n" + "\n".join(lines)
                if lines
                else f"**{rule}**: no answer with the image changed."
            )

    st.subheader("Downloads")
    students = job.students() if job else {}
    columns = st.columns(len(cards))
    for column, (rule, card) in zip(columns, cards.items()):
        column.download_button(
            f"Run card ({rule}, JSON)",
            json.dumps(card_with_verdict(card, cards, not_run), indent=1),
            file_name=f"vlod-run-{rule}{'-' + job.id if job else ''}.json",
            mime="application/json",
            key=f"{prefix}_card_{rule}",
            on_click="ignore",
        )
        if rule in students:
            label, explained = student_download(rule, card)
            column.download_button(
                label,
                lambda folder=students[rule]: student_zip(folder),
                help=explained,
                file_name=f"vlod-student-{rule}-{job.id}.zip",
                mime="application/zip",
                key=f"{prefix}_student_{rule}",
                on_click="ignore",
            )
