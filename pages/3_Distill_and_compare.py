"""Page 3: distil with standard OPD and with steering from the same seed, live, then compare before/after."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from vlod_app.jobs import DistillJob, student_zip
from vlod_app.state import current_spec, get_pair, shown, uses_toy
from vlod_app.widgets import diff_markdown, page_setup, probe_or_default
from vlod_core.distill import DistillConfig
from vlod_core.figures import accuracy_bars, training_curves
from vlod_core.results import RunCard
from vlod_core.steering import RULES, SteeringConfig
from vlod_core.toy.source import toy_data

JOB_KEY = "vlod_distill_job"
RULE_HELP = {
    "standard": "standard: ℓStd only",
    "vgs": "vgs: ℓStd + γ·ℓVis + λ·ℓLP (the paper's VGS)",
    "vgs_no_lp": "vgs_no_lp: VGS without language preservation",
    "vgs_adaptive": "vgs_adaptive: γ per token by VDS quantile",
    "vgs_anchored": "vgs_anchored: q* from the initial student's prior",
    "lang_steer": "lang_steer: ℓStd + γ·ℓLang + λ·ℓVP (inverse control)",
}

page_setup("Distill and compare")
st.title("Distill and compare")
st.caption(
    "Train private copies of the student on fresh toy questions it answers itself, with standard on-policy "
    "distillation and with steering, from the same seed. The loaded pair is never changed."
)
pair = get_pair()
probe = probe_or_default()
if not uses_toy(current_spec()):
    st.warning(
        "Training questions come from the toy world (shapes and colours), and accuracy is measured there too; "
        "with a real pair this is a smoke test of the loop, not a meaningful distillation."
    )
job: DistillJob | None = st.session_state.get(JOB_KEY)
running = job is not None and not job.done

with st.form("distill"):
    rules = st.multiselect(
        "Update rules (run one after the other)", RULES, default=["standard", "vgs"], format_func=RULE_HELP.get
    )
    a, b, c, d = st.columns(4)
    steps = a.number_input("Steps", min_value=1, max_value=5000, value=60, step=10)
    lr = b.number_input(
        "Learning rate (AdamW)",
        min_value=1e-7,
        max_value=1.0,
        value=1e-3,
        format="%.0e",
        step=1e-4,
        help="The toy student needs ~1e-3; the paper used 1e-6 on billion-parameter students",
    )
    batch = c.number_input("Batch (questions per step)", min_value=1, max_value=512, value=32, step=8)
    seed = d.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    e, f, g, h = st.columns(4)
    gamma = e.number_input("γ (steering weight)", min_value=0.0, max_value=10.0, value=2.0, step=0.5)
    lam = f.number_input("λ (preservation weight)", min_value=0.0, max_value=10.0, value=0.01, format="%.3f")
    eval_every = g.number_input(
        "Held-out accuracy every k steps (0: before/after only)", min_value=0, max_value=5000, value=20, step=10
    )
    geometry_every = h.number_input(
        "Angles every k steps (0: never; costs 3+ backward passes)", min_value=0, max_value=5000, value=0, step=10
    )
    submitted = st.form_submit_button("Run", type="primary", disabled=running)

if submitted and not running:
    if not rules:
        st.error("Choose at least one update rule.")
    else:
        configs = {}
        for rule in rules:
            config = shown(
                f"Settings for {rule}",
                DistillConfig,
                steps=int(steps),
                batch=int(batch),
                lr=float(lr),
                seed=int(seed),
                steering=SteeringConfig(rule=rule, gamma=float(gamma), lam=float(lam)),
                eval_every=int(eval_every),
                eval_examples=200,
                geometry_every=int(geometry_every),
            )
            if config is None:
                break
            configs[rule] = config
        else:
            job = DistillJob(pair, configs, toy_data(200), [(probe.image, probe.question)]).start()
            st.session_state[JOB_KEY] = job
            running = True


def draw_live() -> None:
    """Progress and curves while the job runs; polled every second by the fragment below."""
    current: DistillJob = st.session_state[JOB_KEY]
    if current.done:
        st.rerun()  # the whole page, to show the results
    snapshot = current.snapshot()
    for rule, run in snapshot.items():
        done = len(run["records"])
        if run["state"] == "running" and done == 0:
            text = f"{rule}: measuring the student before training…"
        elif run["state"] == "running" and done >= run["steps"]:
            text = f"{rule}: measuring the student after training…"
        else:
            text = f"{rule}: step {done} of {run['steps']} ({run['state']})"
        st.progress(min(1.0, done / run["steps"]), text=text)
    st.plotly_chart(training_curves(snapshot), config={"displayModeBar": False}, key="live_curves")
    if current.stopping:
        st.warning("Stopping after the current step…")
    else:
        st.button("Stop", key="stop_run", on_click=current.stop)


if running:
    st.subheader("Training")
    st.fragment(run_every=1.0)(draw_live)()
    st.stop()


def show_cards(cards: dict[str, RunCard], prefix: str, students: dict | None = None) -> None:
    """Results of finished runs: accuracies, curves, before/after answers, downloads."""
    for rule, card in cards.items():
        if card.stopped:
            st.warning(f"{rule}: {card.stopped}")
    plain = {rule: card.to_dict() for rule, card in cards.items()}
    summary = pd.DataFrame(
        [
            {
                "rule": rule,
                "steps": len(card.records),
                "seconds": card.seconds,
                "with image before": card.before["accuracy_image"],
                "with image after": card.after["accuracy_image"],
                "without image before": card.before["accuracy_no_image"],
                "without image after": card.after["accuracy_no_image"],
            }
            for rule, card in cards.items()
        ]
    )
    st.dataframe(
        summary,
        hide_index=True,
        column_config={k: st.column_config.NumberColumn(format="%.3f") for k in summary.columns if "image" in k},
    )
    bars, answers = st.columns([3, 2], gap="large")
    bars.plotly_chart(accuracy_bars(plain), config={"displayModeBar": False}, key=f"{prefix}_accuracy_bars")
    with answers:
        st.markdown("**Your image, before → after** (changed words: red struck out, green new)")
        for rule, card in cards.items():
            for before, after in zip(card.probe_before, card.probe_after):
                st.caption(f"{rule} · “{after['question']}”")
                st.markdown(
                    f"with the image: {before['image']} → {diff_markdown(before['image'], after['image'])}  \n"
                    f"without: {before['no_image']} → {diff_markdown(before['no_image'], after['no_image'])}"
                )
    st.plotly_chart(
        training_curves({r: {"records": c.records, "before": c.before, "after": c.after} for r, c in cards.items()}),
        config={"displayModeBar": False},
        key=f"{prefix}_final_curves",
    )

    st.subheader("Fixed held-out samples, before and after")
    first = next(iter(cards.values()))
    if first.answers_before:
        table = []
        for i, before in enumerate(first.answers_before):
            row = {
                "question": before["question"],
                "right answer": before.get("reference", ""),
                "before (image)": before["image"],
            }
            row |= {
                f"{rule} (image)": card.answers_after[i]["image"]
                for rule, card in cards.items()
                if i < len(card.answers_after)
            }
            row["before (no image)"] = before["no_image"]
            row |= {
                f"{rule} (no image)": card.answers_after[i]["no_image"]
                for rule, card in cards.items()
                if i < len(card.answers_after)
            }
            table.append(row)
        st.dataframe(pd.DataFrame(table), hide_index=True)
        for rule, card in cards.items():
            changed = [(b, a) for b, a in zip(card.answers_before, card.answers_after) if b["image"] != a["image"]]
            lines = [f"- “{a['question']}”: {diff_markdown(b['image'], a['image'])}" for b, a in changed]
            st.markdown(
                f"**{rule}**, answers with the image that changed:\n" + "\n".join(lines)
                if lines
                else f"**{rule}**: no answer with the image changed."
            )

    st.subheader("Downloads")
    columns = st.columns(len(cards))
    for column, (rule, card) in zip(columns, cards.items()):
        column.download_button(
            f"Run card ({rule}, JSON)",
            json.dumps(card.to_dict(), indent=1),
            file_name=f"vlod-run-{rule}.json",
            mime="application/json",
            key=f"{prefix}_card_{rule}",
        )
        if students and students.get(rule) is not None:
            student = students[rule]
            column.download_button(
                f"Distilled student ({rule}, zip)",
                lambda s=student: student_zip(s, pair.processor),
                file_name=f"vlod-student-{rule}.zip",
                mime="application/zip",
                key=f"{prefix}_student_{rule}",
            )


if job is not None:
    if job.error:
        st.error(f"Distillation failed: {job.error}")
    if job.cards():
        st.subheader("Results")
        show_cards(job.cards(), "run", {rule: run.student for rule, run in job.runs.items()})

st.subheader("View a saved run card")
uploaded = st.file_uploader(
    "A run card (JSON) downloaded from this page or written by `vlod distill`", type=["json"], key="card_upload"
)
if uploaded is not None:
    card = shown(f"Reading {uploaded.name}", RunCard.from_json, uploaded.getvalue())
    if card is not None:
        rule = (
            card.config.get("steering", {}).get("rule", "run")
            if isinstance(card.config.get("steering"), dict)
            else "run"
        )
        st.caption(f"{uploaded.name}: pair {card.pair}, {len(card.records)} steps in {card.seconds} s")
        show_cards({str(rule): card}, "viewed")
