"""Page 3: distil with standard OPD and with steering from the same seed, live, then compare before/after.

"Train on" is the toy world or the session's own images (`vlod_app.data_picker`: uploads, typed questions,
zips, the shipped example set, with a preview); with my images, every row is shown before and after.
A run is a job on the server (`vlod_app.jobs`, one worker process each), kept by id in the URL as `run`:
a reload or a shared link shows the same run, its progress and its Stop. The settings (`rules`, `steps`,
`lr`, `batch`, `seed`, `gamma`, `lam`, `eval_every`, `geometry_every`) are in the URL too. Run starts the
job from a callback, so the form is disabled, showing the running job's settings, from the very run that
started it. Progress and results sit in the main column, the form in the sidebar.
"""

from __future__ import annotations

import shutil

import streamlit as st

from vlod_app import data_picker
from vlod_app.jobs import (
    EVAL_EXAMPLES,
    FORM_SETTINGS,
    MAX_PASSES,
    Job,
    RegistryFull,
    class_demo,
    default_settings,
    eta_text,
    fitted_steps,
    passes,
    seconds_estimate,
)
from vlod_app.links import Params, from_link
from vlod_app.run_results import show_cards
from vlod_app.run_view import live_status, memory_text, prompt_tokens
from vlod_app.server import job_registry
from vlod_app.state import cached_pair, current_spec, get_pair, shown, uses_toy, worker_threads
from vlod_app.worlds import answer_length, answer_pattern, world
from vlod_app.widgets import (
    adopt_probe,
    page_setup,
    probe_or_default,
    probe_params,
    result_anchor,
    scroll_to,
)
from vlod_core import settings
from vlod_core.distill import DistillConfig
from vlod_core.figures.runs import training_curves
from vlod_core.results import RunCard
from vlod_core.steering import RULES, rule_label

JOB_KEY = "vlod_distill_job"
ERROR_KEY = "vlod_run_error"
FITTED_KEY = "vlod_fitted_for"  # the set whose size the steps were last fitted to
FIT_NOTE_KEY = "vlod_fit_note"
OVERFIT_KEY = "vlod_overfit_said"  # the settings whose overfitting was said at Run (a second Run starts them)
FIELDS = settings.entries(DistillConfig)  # each form setting's range, step, format and help


def defaults() -> dict:
    """The form's defaults for the session's pair: the app's, and its toy world's own beside them (`jobs`)."""
    return default_settings(world(current_spec()))


def set_form(values: dict) -> None:
    st.session_state["run_rules"] = list(values["rules"])
    for name in FORM_SETTINGS:
        st.session_state[f"run_{name}"] = values.get(name, defaults()[name])


def form_settings() -> dict:
    state = st.session_state
    values = {"rules": list(state.get("run_rules", defaults()["rules"]))}
    for name in FORM_SETTINGS:  # before the form is first drawn: its defaults
        values[name] = FIELDS[name].coerce(state.get(f"run_{name}", defaults()[name]))
    return values


def start_run(profile: dict | None = None) -> None:
    """The Run button (the form's settings) or the class demo's (`profile`): submit a job; from this moment
    the form shows it and is disabled."""
    state = st.session_state
    state.pop(ERROR_KEY, None)
    probe = probe_or_default()
    registry = job_registry()
    spec = current_spec()
    unshown = {name: value for name, value in defaults().items() if name not in FORM_SETTINGS and name != "rules"}
    values, folder = (dict(profile) if profile else unshown | form_settings()), None  # e.g. a world's held-out rows
    if data_picker.trains_on_my_images():
        chosen = data_picker.chosen_set()
        if chosen is None:
            state[ERROR_KEY] = "Not started: load your images first (or the example set), or train on the toy world."
            return
        rows, asked = training_rows(), (chosen.token, values["steps"], values["batch"])
        if passes(values, rows) > MAX_PASSES and state.get(OVERFIT_KEY) != asked:
            state[OVERFIT_KEY] = asked  # said once before Run: a second Run with the same settings starts it
            return
        values["data"] = chosen.data.name
    try:
        threads = worker_threads(cached_pair(spec), registry.max_running)
        if data_picker.trains_on_my_images():  # the set as an image folder in the session's private folder
            folder = data_picker.my_data().for_job(chosen.data, chosen.split)
        job = registry.submit(spec, values, [(probe.image, probe.question)], threads, data=folder)
    except (ValueError, OSError, RegistryFull) as error:
        state[ERROR_KEY] = f"Not started: {error}."
        return
    finally:
        if folder is not None:  # the job has its own copy
            shutil.rmtree(folder, ignore_errors=True)
    state[JOB_KEY] = job.id
    scroll_to("training")


view = page_setup(
    "Distill and compare",
    "distill",
    "Train private copies of the student on questions it answers itself (fresh toy scenes, or your own images), "
    "with standard on-policy distillation and with steering, from the same seed. The loaded pair is never changed.",
)
pair = get_pair()
registry = job_registry()

# ------------------------------------------------------------------------------------- a link's run or settings
params = Params()
if from_link():
    adopt_probe(params)  # the image and question whose before/after answers the run shows
    if params.raw.get("data") == "mine":  # made with the sender's own images, which a link cannot carry
        st.session_state["train_on"] = data_picker.MY_IMAGES
        if data_picker.chosen_set() is None:
            st.info(
                "This link was made training on the sender's own images, which a link cannot carry: upload "
                "yours below, or use the example set."
            )
    if "run" in params.raw:
        linked = registry.get(params.raw["run"])
        if linked is None or linked.kind != "distill":  # a paper check's id belongs to page 4's `check=`
            st.warning(
                f"Run `{params.raw['run']}` is not a distillation run on this server: finished runs are kept for "
                f"{registry.keep_s / 3600:g} h, and a restart forgets them. Its run card, if you saved it, can be "
                "viewed below."
            )
        else:
            st.session_state[JOB_KEY] = linked.id
            set_form(linked.settings)  # the form says what this run was
    elif "rules" in params.raw:
        linked = dict(defaults(), rules=params.choices("rules", RULES) or defaults()["rules"])
        for name in FORM_SETTINGS:
            about, kind = FIELDS[name].about, FIELDS[name].kind
            value = (params.number if kind is float else params.integer)(name, kind(about.low), kind(about.high))
            if value is not None:
                linked[name] = value
        set_form(linked)
    params.show_problems()

job: Job | None = registry.get(st.session_state.get(JOB_KEY))
running = job is not None and not job.done
probe = probe_or_default()
view.show_probe(probe)


def training_data() -> None:
    """Train on: the toy world or my images, with the preview (below a run's results, so they stay in view)."""
    st.subheader("Training data")
    data_picker.train_on(uses_toy(current_spec()), disabled=running)
    toy_world = "the toy reasoning world" if world(current_spec()) == "reasoning" else "the toy world"
    if pattern := answer_pattern(world(current_spec())):
        st.caption(
            f"The pair answers in chains: up to {answer_length(world(current_spec()))} new tokens, and accuracy is "
            f"the exact match of the final answer the pattern `{pattern}` reads (a chain it cannot read counts wrong "
            f"and as a format error). Toy questions come from {toy_world}."
        )
    if running:
        data_name = job.settings.get("data")
        st.caption(f"This run trains on {'your set ' + repr(data_name) if data_name else toy_world}.")
    elif data_picker.trains_on_my_images():
        data_picker.preview(pair, current_spec())
    elif not uses_toy(current_spec()):
        st.warning(
            "Training questions come from the toy world (shapes and colours), and accuracy is measured there too; "
            "with a real pair this is a smoke test of the loop, not a meaningful distillation: train on your own "
            "images instead."
        )


def training_rows() -> int | None:
    """How many rows my images' run would train on (None on the toy world: endless fresh scenes)."""
    chosen = data_picker.chosen_set() if data_picker.trains_on_my_images() else None
    if chosen is None:
        return None
    return len(chosen.data.rows) if chosen.split.seen_in_training else len(chosen.split.train)


def fit_pending() -> bool:
    """Whether a set was chosen whose size the steps have not been checked against yet (an upload is read
    below the form, in the same run: the page runs again to fit the form before drawing it)."""
    chosen = data_picker.chosen_set() if data_picker.trains_on_my_images() else None
    return chosen is not None and st.session_state.get(FITTED_KEY) != chosen.token


def fit_to_set() -> None:
    """Fewer steps, so a small set is not seen hundreds of times over (the student learns its wording)."""
    st.session_state["run_steps"] = fitted_steps(form_settings(), training_rows() or 1)


# ------------------------------------------------------------------------------------- the form (sidebar)
if running:
    set_form(job.settings)  # the running job's settings, whatever the form held
else:
    if fit_pending():  # a new set: settings that fit it
        rows, chosen = training_rows(), data_picker.chosen_set()
        st.session_state[FITTED_KEY] = chosen.token
        if passes(form_settings(), rows) > MAX_PASSES:
            fit_to_set()
            st.session_state[FIT_NOTE_KEY] = (
                f"Steps set to {st.session_state['run_steps']} for your {rows} training rows: at batch "
                f"{form_settings()['batch']} that is about {MAX_PASSES} passes over each row. The toy "
                f"world's {defaults()['steps']} would go over each row "
                f"{passes(defaults(), rows):.0f} times, and the student would learn the rows' wording "
                "instead of looking at the images."
            )
with view.inputs, st.form("distill"):  # each widget's own default is defaults()'s (links set their state)
    st.multiselect(
        "Update rules (run one after the other)",
        RULES,
        default=defaults()["rules"],
        format_func=rule_label,
        key="run_rules",
        disabled=running,
    )
    for name in FORM_SETTINGS:
        st.number_input(
            **settings.widget(DistillConfig, name, defaults()[name]), key=f"run_{name}", disabled=running
        )
    st.form_submit_button("Run", type="primary", disabled=running, on_click=start_run)
    if running:
        st.caption("These are the running job's settings. Stop it, or wait for it, to start another.")
with view.inputs:
    rows = None if running else training_rows()
    if rows is not None and FIT_NOTE_KEY in st.session_state:
        st.caption(st.session_state[FIT_NOTE_KEY])
    if rows is not None and passes(form_settings(), rows) > MAX_PASSES:
        values = form_settings()
        st.warning(
            f"{values['steps']} steps × {values['batch']} answers go over each of your {rows} training rows "
            f"about {passes(values, rows):.0f} times: the student is likely to learn the rows' wording and break "
            f"answers it had right. Fewer steps (or a smaller learning rate) fit a set this size."
            + (" Press Run again to run it anyway." if st.session_state.get(OVERFIT_KEY) else "")
        )
        st.button(
            f"Use {fitted_steps(values, rows)} steps",
            on_click=fit_to_set,
            help=f"At most {MAX_PASSES} passes over each training row",
        )
with view.inputs:
    memory = shown(
        "Estimating the memory",
        lambda: memory_text(
            pair,
            int(st.session_state.get("run_batch", defaults()["batch"])),
            int(st.session_state.get("run_lora_rank", defaults()["lora_rank"])),
            prompt_tokens(pair, probe.image, probe.question),
        ),
    )
    if memory:
        st.caption(memory)

if ERROR_KEY in st.session_state:
    st.error(st.session_state[ERROR_KEY])


def draw_live() -> None:
    """Progress with an ETA and Stop beside it, each rule's step, and the curves; polled every second."""
    current = registry.get(st.session_state.get(JOB_KEY))
    if current is None or current.done:
        st.rerun()  # the whole page, to show the results
    current.touch()
    if current.state == "queued":
        position = registry.position(current)
        st.info(
            f"Waiting for a free place: number {position} in line (this server runs {registry.max_running} "
            "at once). It starts by itself; this page shows it when it does."
        )
        st.button("Cancel", key="stop_run", on_click=current.stop)
        return
    bar, stop = st.columns([7, 1], vertical_alignment="bottom")
    snapshot = current.snapshot()
    status = "starting a worker process and loading the pair…" if current.state == "starting" else live_status(snapshot)
    bar.progress(current.fraction(), text=f"Run `{current.id}` — {status} — {eta_text(current.eta_seconds())}")
    if current.stopping:
        stop.button("Stopping…", key="stop_run", disabled=True)
    else:
        stop.button("Stop", key="stop_run", on_click=current.stop, type="primary")
    st.caption(
        " · ".join(
            f"{rule}: {len(run['records'])}/{run['steps']} steps ({run['state']})" for rule, run in snapshot.items()
        )
    )
    st.plotly_chart(training_curves(snapshot), config={"displayModeBar": False}, key="live_curves")


# ------------------------------------------------------------------------------------- progress or results
url_values = probe_params(probe) | form_settings() | {"run": job.id if job else None}
url_values["data"] = "mine" if data_picker.trains_on_my_images() else None
if running:  # the progress first, in view at once on a projector; the data it trains on below
    result_anchor("training").subheader("Training")
    st.fragment(run_every=1.0)(draw_live)()
    training_data()
    view.share(url_values)
    st.stop()

if job is not None:
    view.context = f"run {job.id}"
    st.subheader(f"Results of run `{job.id}`")
    if job.error and not any(run.state == "failed" for run in job.runs.values()):
        st.error(f"Distillation failed: {job.error}")
    show_cards(view, job.cards(), "run", job)
    training_data()
    if fit_pending():
        st.rerun()
else:
    with st.container(border=True, key="class_demo"):
        world_name, side_by_side = world(current_spec()), registry.parallel
        demo_settings = class_demo(world_name)
        demo = {name: demo_settings.get(name, EVAL_EXAMPLES) for name in ("steps", "eval_examples")}  # rows: its cap
        when = f"about {seconds_estimate(demo_settings, world_name, side_by_side):.0f} s on two quiet cores"
        if world_name == "default":
            form_seconds = seconds_estimate(form_settings(), side_by_side=side_by_side)
            when += f" (the settings in the sidebar: about {form_seconds:.0f} s)"
        else:  # the one setting of the world's full check where a rule gained within 300 steps (README, "The app")
            when = (
                f"the reasoning pair's own defaults (lr {demo_settings['lr']:g}: the rate at which the full check "
                f"measured a gain within {demo['steps']} steps, and at which standard's chains may break), {when}"
            )
        rules = " and ".join(demo_settings["rules"])
        st.markdown(
            f"**Class demo**: {rules} from the same seed, {demo['steps']} steps each, accuracy on "
            f"{demo['eval_examples']} held-out scenes — {when}."
        )
        st.button("Run the class demo", type="primary", on_click=start_run, args=(demo_settings,), key="run_demo")
    if ERROR_KEY not in st.session_state:
        st.caption("Or choose the update rules and settings in the sidebar, then Run. Results appear here.")
    training_data()
    if fit_pending():
        st.rerun()

st.subheader("View a saved run card")
uploaded = st.file_uploader(
    "A run card (JSON) downloaded from this page or written by `vlod distill`", type=["json"], key="card_upload"
)
if uploaded is not None:
    card = shown(f"Reading {uploaded.name}", RunCard.from_json, uploaded.getvalue())
    if card is not None:
        steering = card.config.get("steering")
        rule = steering.get("rule", "run") if isinstance(steering, dict) else "run"
        st.caption(f"{uploaded.name}: pair {card.pair}, {len(card.records)} steps in {card.seconds} s")
        show_cards(view, {str(rule): card}, "viewed")

view.share(url_values)
