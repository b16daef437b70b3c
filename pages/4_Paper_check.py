"""Page 4: the paper check — the latest experiments report of a toy world, and a quick check started here.

The report is the newest `results.json` of the chosen world (default, or reasoning: the sidebar, the link's
`world`, else the world of the pair in use) under `$VLOD_HOME/experiments/`, the one that
`python -m vlod_core experiments [--world W]` writes, or until there is one the full report shipped with vlod
under `docs/experiments/<world>/` (`vlod_app.paper.report_to_show`; the page says which it shows): its claims
table first (the VGS claims first, verdicts coloured), the other world's verdicts beside them, then each
experiment's figure. *Run the quick check* starts `--quick` on the world's toy pair as a job on the server
(`vlod_app.jobs.ExperimentsJob`, one worker process that spreads the runs over the cores), kept by id in the
URL as `check`: a reload or a shared link shows its live progress and its Stop. One check runs at a time per
server; its finished runs are cached, so a stopped check resumes where it stopped.
"""

from __future__ import annotations

import streamlit as st

from vlod_app.jobs import ExperimentsJob, RegistryFull, eta_text
from vlod_app.links import Params, from_link
from vlod_app.paper import (
    SECTIONS,
    WORLD_PAIRS,
    WORLD_WORDS,
    claims_frame,
    other_worlds,
    plan_differences,
    report_to_show,
    shipped_results,
    source_line,
    summary_line,
    verdict_colour,
    verdict_counts,
    verdict_rule_words,
    world_pair,
    worlds_frame,
)
from vlod_app.server import job_registry
from vlod_app.state import current_spec, shown, toy_ready
from vlod_app.worlds import world as world_of_pair
from vlod_app.widgets import page_setup
from vlod_core.experiments import QUICK, default_out_dir, estimate_seconds
from vlod_core.experiments.check import REPORT, RESULTS, experiments_home, world_of
from vlod_core.experiments.figures import all_figures
from vlod_core.toy.source import in_world

CHECK_KEY = "vlod_check_job"
ERROR_KEY = "vlod_check_error"
WORLD_KEY = "vlod_check_world"
WORKERS = 2  # one process per core of the 2-core machine the quick plan is sized for
VERDICT_WIDTH = 110  # pixels: "inconclusive" and "not measured" whole


def start_check(world: str) -> None:
    """The start button: submit the quick check of `world` on its toy pair (or join the one going on)."""
    state = st.session_state
    state.pop(ERROR_KEY, None)
    plan = in_world(QUICK, world)
    try:
        job = job_registry().submit_experiments(
            world_pair(world), {"plan": plan.to_dict(), "workers": WORKERS, "out": str(default_out_dir(plan))}
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
linked_world = params.choice("world", tuple(WORLD_PAIRS)) if from_link() else None
if linked_world is not None or WORLD_KEY not in st.session_state:
    st.session_state[WORLD_KEY] = linked_world or world_of_pair(current_spec())  # else: the pair in use
params.show_problems()
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
with view.inputs:
    world = st.segmented_control(
        "Toy world",
        tuple(WORLD_PAIRS),
        key=WORLD_KEY,
        required=True,
        help="The default world: " + WORLD_WORDS["default"] + ". The reasoning world: " + WORLD_WORDS["reasoning"],
    )
    plan = in_world(QUICK, world)
    estimate = estimate_seconds(plan, WORKERS)
    flag = "" if world == "default" else f" --world {world}"
    built = toy_ready(world_pair(world))
    st.button(
        "Run the quick check",
        type="primary",
        on_click=start_check,
        args=(world,),
        disabled=running or not built,
        help=f"The same as `python -m vlod_core experiments --quick{flag}`",
    )
    st.caption(
        f"{plan.seeds} seeds, {estimate['runs']} training runs on the {world} world's toy pair, about "
        f"{estimate['wall_seconds'] / 60:.0f} min on {WORKERS} quiet cores. Finished runs are cached under "
        f"`{default_out_dir(plan)}`: a stopped check resumes. The full check runs from the command line: "
        f"`python -m vlod_core experiments{flag}`."
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
shown_report = shown("Reading the latest report", report_to_show, world=world)
if shown_report is None:
    st.info(
        f"No report yet in `{experiments_home()}` for the {world} world. Run the quick check (sidebar), or from "
        f"the command line `python -m vlod_core experiments --quick{flag}`; the report shows here when it is done."
    )
    if not built:
        st.caption("The toy pair is being built first (progress at the top).")
else:
    results, folder = shown_report.results, shown_report.folder
    shipped = None if shown_report.shipped else shipped_results(world=world)
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
    others = other_worlds(world)
    if others:
        st.markdown("**The two worlds side by side**")
        reports = [results] + [o.results for o in others]
        st.caption(
            " ".join(f"The {world_of(r)} world: {WORLD_WORDS[world_of(r)]}." for r in reports)
            + " The same claims and the same verdict rule in each: where the KL is all visual, the standard update "
            "already points where VGS steers; where the language part competes, steering has room to matter. "
            + " · ".join(f"{world_of(o.results)}: " + source_line(o) for o in others)
        )
        view.table(
            worlds_frame(reports),
            "worlds",
            column_config={world_of(r): st.column_config.TextColumn(width=VERDICT_WIDTH, pinned=True) for r in reports}
            | {"claim": st.column_config.TextColumn("claim", width="large")},
            key="worlds",
            styles={world_of(r): verdict_colour for r in reports},
        )
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

view.share({"check": job.id if job is not None else None, "world": world if world != "default" else None})
