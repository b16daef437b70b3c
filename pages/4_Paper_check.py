"""Page 4: the paper check — the latest experiments report, and a quick check started here.

The report is the newest `results.json` under `$VLOD_HOME/experiments/`, the one that
`python -m vlod_core experiments` writes, or until there is one the full report shipped with vlod under
`docs/experiments/` (`vlod_app.paper.report_to_show`; the page says which it shows): its claims table first
(the VGS claims first, verdicts coloured), then each experiment's figure. *Run the quick
check* starts `--quick` on the toy pair as a job on the server (`vlod_app.jobs.ExperimentsJob`, one worker
process that spreads the runs over the cores), kept by id in the URL as `check`: a reload or a shared link
shows its live progress and its Stop. One check runs at a time per server; its finished runs are cached, so a
stopped check resumes where it stopped.
"""

from __future__ import annotations

import streamlit as st

from vlod_app.jobs import ExperimentsJob, RegistryFull, eta_text
from vlod_app.links import Params, from_link
from vlod_app.paper import (
    SECTIONS,
    claims_frame,
    plan_differences,
    report_to_show,
    shipped_results,
    source_line,
    summary_line,
    verdict_colour,
    verdict_counts,
    verdict_rule_words,
)
from vlod_app.server import job_registry
from vlod_app.state import shown, toy_ready
from vlod_app.widgets import page_setup
from vlod_core.experiments import QUICK, default_out_dir, estimate_seconds
from vlod_core.experiments.check import REPORT, RESULTS, experiments_home
from vlod_core.experiments.figures import all_figures
from vlod_core.pair import PairSpec

CHECK_KEY = "vlod_check_job"
ERROR_KEY = "vlod_check_error"
WORKERS = 2  # one process per core of the 2-core machine the quick plan is sized for
TOY = PairSpec()  # the check runs on the toy pair, whatever pair the other pages use
VERDICT_WIDTH = 110  # pixels: "inconclusive" and "not measured" whole


def start_check() -> None:
    """The start button: submit the quick check (or join the one going on)."""
    state = st.session_state
    state.pop(ERROR_KEY, None)
    try:
        job = job_registry().submit_experiments(
            TOY, {"plan": QUICK.name, "workers": WORKERS, "out": str(default_out_dir(QUICK))}
        )
    except RegistryFull as error:
        state[ERROR_KEY] = f"Not started: {error}."
        return
    state[CHECK_KEY] = job.id


view = page_setup(
    "Paper check",
    "paper",
    "Every checkable claim of the paper, measured on the toy world over several seeds, with standard errors and "
    "a verdict each: where the toy world agrees with the paper, and where it does not.",
)
registry = job_registry()

# ------------------------------------------------------------------------------------- a link's check
params = Params()
if from_link() and "check" in params.raw:
    linked = registry.get(params.raw["check"])
    if isinstance(linked, ExperimentsJob):
        st.session_state[CHECK_KEY] = linked.id
    else:
        st.warning(
            f"Check `{params.raw['check']}` is not on this server (a restart forgets finished ones); the latest "
            "report is below."
        )
job = registry.get(st.session_state.get(CHECK_KEY)) or registry.experiments()
job = job if isinstance(job, ExperimentsJob) else None
running = job is not None and not job.done

# ------------------------------------------------------------------------------------- start (sidebar)
estimate = estimate_seconds(QUICK, WORKERS)
with view.inputs:
    built = toy_ready(TOY)
    st.button(
        "Run the quick check",
        type="primary",
        on_click=start_check,
        disabled=running or not built,
        help="The same as `python -m vlod_core experiments --quick`",
    )
    st.caption(
        f"{QUICK.seeds} seeds, {estimate['runs']} training runs on the toy pair, about "
        f"{estimate['wall_seconds'] / 60:.0f} min on {WORKERS} quiet cores. Finished runs are cached under "
        f"`{default_out_dir(QUICK)}`: a stopped check resumes. The full check (about 25 min) runs from the command "
        "line: `python -m vlod_core experiments`."
    )
    if running:
        st.caption("A check is going on: it keeps going if you leave this page.")

if ERROR_KEY in st.session_state:
    st.error(st.session_state[ERROR_KEY])


def draw_live() -> None:
    """The check's progress with an ETA and Stop beside it, and the runs in flight; polled every second."""
    current = registry.get(st.session_state.get(CHECK_KEY)) or registry.experiments()
    if current is None or current.done:
        st.rerun()  # the whole page, with the new report
    current.touch()
    progress = current.snapshot()
    if current.state == "queued":
        status = "waiting for a free place on this server"
    elif not progress:
        status = "starting a worker process and loading the pair…"
    else:
        status = f"{progress['done']} of {progress['total']} runs ({progress['cached']} from the cache)"
    bar, stop = st.columns([7, 1], vertical_alignment="bottom")
    bar.progress(current.fraction(), text=f"Check `{current.id}` — {status} — {eta_text(current.eta_seconds())}")
    if current.stopping:
        stop.button("Stopping…", key="stop_check", disabled=True)
    else:
        stop.button("Stop", key="stop_check", on_click=current.stop, type="primary")
    if progress.get("running"):
        st.caption(" · ".join(progress["running"]))


if running:
    st.subheader("Checking")
    st.session_state[CHECK_KEY] = job.id
    st.fragment(run_every=1.0)(draw_live)()
elif job is not None and job.error:
    st.error(f"Check `{job.id}` failed: {job.error}")
elif job is not None and (job.stopped or job.stop_reason):
    st.warning(f"Check `{job.id}` stopped before every run finished; its finished runs are cached: run it again.")

# ------------------------------------------------------------------------------------- the report
shown_report = shown("Reading the latest report", report_to_show)
if shown_report is None:
    st.info(
        f"No report yet in `{experiments_home()}`. Run the quick check (sidebar), or from the command line "
        "`python -m vlod_core experiments --quick`; the report shows here when it is done."
    )
    if not toy_ready(TOY):
        st.caption("The toy pair is being built first (progress at the top).")
else:
    results, folder = shown_report.results, shown_report.folder
    shipped = None if shown_report.shipped else shipped_results()
    reference = shipped.results if shipped and shipped.results["plan"]["name"] != results["plan"]["name"] else None
    view.context = f"{results['plan']['name']} {results['created'][:10]}"
    st.subheader(f"Claims: {verdict_counts(results)}")
    if shown_report.shipped:
        st.info(
            f"{source_line(shown_report)} Nothing has been checked on this server yet: *Run the quick check* "
            f"(sidebar, about {estimate['wall_seconds'] / 60:.0f} min) measures it here, and its report replaces "
            "this one."
        )
    else:
        st.caption(source_line(shown_report) + " " + summary_line(results, folder))
    view.table(
        claims_frame(results, reference),
        "claims",
        column_config={
            "verdict": st.column_config.TextColumn(  # pinned: in view however far the table scrolls sideways
                "verdict", width=VERDICT_WIDTH, pinned=True, help="by the rule in the last column"
            ),
            "claim": st.column_config.TextColumn("claim", width="large"),
        },
        key="claims",
        styles={"verdict": verdict_colour}
        | ({f"{reference['plan']['name']} plan": verdict_colour} if reference else {}),
    )
    st.markdown(f"**What a verdict means.** {verdict_rule_words(results)}")
    if reference is not None:
        st.caption(
            f"Beside each verdict, the {reference['plan']['name']} plan's (the report shipped with vlod). Where they "
            f"differ, the plans do: {plan_differences(results, reference)}. The rule deciding a verdict is the same."
        )
    with st.expander("How a verdict is decided, exactly"):
        st.markdown("\n".join(f"- {rule}" for rule in results["verdict_rules"]))
    st.markdown(f"**Learning rates**: {results['experiments']['learning_rate']['answer']}")
    row = st.container(horizontal=True)
    for name, mime in ((REPORT, "text/html"), (RESULTS, "application/json")):
        row.download_button(
            name,
            (folder / name).read_bytes() if (folder / name).is_file() else b"",
            file_name=f"vlod-paper-check-{results['plan']['name']}-{name}",
            mime=mime,
            key=f"download_{name}",
            on_click="ignore",
            icon=":material/download:",
            disabled=not (folder / name).is_file(),
        )
    figures = shown("Drawing the report's figures", all_figures, results) or {}
    for name, figure in ((n, f) for n, f in figures.items() if f is not None):
        st.markdown(f"**{SECTIONS.get(name, name)}**")
        view.chart(figure, name, key=f"paper_{name}")

view.share({"check": job.id if job is not None else None})
