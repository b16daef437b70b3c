"""What the paper check runs: the plan (seeds, steps, sweep points) and the arms it expands into.

The five experiments of issue 13 become *arms*, one training configuration each, run once per seed:

1. geometry: angles per VDS bin at the start and after the `standard` arm's steps (measured inside that arm);
2. rules: `standard`, `vgs`, `vgs_anchored`, `lang_steer`, `vgs_no_lp`, and `vgs` with the paper's fixed η;
3. sweeps: γ ∈ {1, 2, 3, 4} and λ ∈ {0, 0.01, 0.1, 1} (γ = 2 is `vgs`, λ = 0 is `vgs_no_lp`);
4. learning rates: `standard` and `vgs` at several rates, more steps at the small ones;
5. step cost: VGS / standard from the runs of part 2.

Every arm of one seed sees the same prompts and sampling seeds (`DistillConfig.seed`), so comparisons are
paired. Arms whose configurations coincide (γ = 2 and `vgs`; the default rate of the learning-rate sweep
and the rules) are the same run: the runner keys runs by their configuration and runs each once.

`QUICK` and `FULL` (and `PLAN_IN_WORLD`, a world's own cuts of them) are the one place the steps and sweep
points are written: re-tune them here (with `estimate_seconds` and the step costs measured by
`bench/step_cost.py`) when the toy world changes. Rate, batch and answer length come from `DistillConfig`'s
defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from types import MappingProxyType

from vlod_core.distill import DistillConfig
from vlod_core import settings
from vlod_core.steering import RULES

DEFAULTS = DistillConfig()
COMPARED_RULES = ("standard", "vgs", "vgs_anchored", "lang_steer", "vgs_no_lp")
PAPER_ETA = 0.41  # the paper's fixed η (2B student, γ = 2): the setting its 1.375× step cost is quoted for
LR_RULES = ("standard", "vgs")
PARTS = ("geometry", "rules", "gamma", "lambda", "learning_rate", "cost")

# Seconds per unit of work with one intra-op thread, toy pair, batch 32 (bench/step_cost.py and
# bench-like timings of evaluation and geometry on a quiet machine); only for the time estimate and the ETA.
STANDARD_STEP_SECONDS = 0.073  # image passes only (the image-free ones every 10th step)
STEERED_STEP_SECONDS = 0.126  # both contexts, η measured every step (two more backward passes)
FIXED_ETA_STEP_SECONDS = 0.092  # both contexts, η fixed
EVAL_SECONDS = 0.001  # per evaluation row (400 rows: 0.4 s)
TEACHER_REFERENCE_SECONDS = 0.0025  # per evaluation row, once per run (the teacher's greedy answers)
GEOMETRY_SECONDS = 0.012  # per geometry row (10 bins)
RUN_OVERHEAD_SECONDS = 0.5  # copying the student, the optimiser, an Accelerator
# A world whose answers are longer costs more per step (sampling, four passes over longer responses) and per
# evaluation row (final answers need the student's generated chains). Measured as ratios of the same rule's
# per-step and per-run times in the reasoning world's quick check and the default world's full one, both
# with two workers on this 2-core machine (README, "The two worlds side by side"): steps 1.3-2.1x, median 1.7;
# evaluation ~7x (400 rows, four evaluations a run).
WORLD_COST = MappingProxyType({"default": (1.0, 1.0), "reasoning": (1.7, 7.0)})  # world -> (step, eval row) scale


@dataclass(frozen=True)
class Plan:
    """Seeds, steps and sweep points of one paper check. Frozen: it keys nothing, but it cannot drift."""

    name: str = "full"
    seeds: int = 3
    steps: int = 300  # the rules and the γ / λ sweeps, at the default learning rate
    lr: float = DEFAULTS.lr
    batch: int = DEFAULTS.batch
    evaluations: int = 6  # evaluations during a run (besides before and after), evenly spaced
    eval_examples: int = DEFAULTS.eval_examples
    rules: tuple[str, ...] = COMPARED_RULES
    paper_eta: float = PAPER_ETA  # 0: no fixed-η arm (then no step-cost claim in the paper's setting)
    gammas: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    lams: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0)
    learning_rates: tuple[tuple[float, int], ...] = ((3e-5, 600), (1e-4, 600), (3e-4, 450), (1e-3, 300))
    geometry_rows: int = 128  # rows whose gradients the angles are taken over (at the start and after)
    geometry_bins: int = 10
    windows: int = 10  # ℓLang on the top-30% VDS tokens is averaged over this many windows of steps
    answer_pattern: str | None = None  # reasoning answers: accuracy on this final answer (DistillConfig's)
    eval_samples: int = 0  # Acc@k's k in every evaluation (0: none)
    world: str = "default"  # the toy world measured (results.json says it; the data and pair come with it)
    max_new_tokens: int = DEFAULTS.sampling.max_new_tokens  # the student's answers in training
    eval_max_new_tokens: int = DEFAULTS.eval_max_new_tokens  # the greedy answers evaluation compares

    def __post_init__(self):
        for name in (
            "seeds",
            "steps",
            "batch",
            "evaluations",
            "eval_examples",
            "geometry_rows",
            "geometry_bins",
            "windows",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if self.seeds < 2:
            raise ValueError(f"seeds must be at least 2 (a standard error needs two), got {self.seeds}")
        if self.seeds > 100:
            raise ValueError(f"seeds must be at most 100, got {self.seeds}")
        if self.evaluations < 0 or self.windows < 1 or self.geometry_rows < 1 or self.geometry_bins < 1:
            raise ValueError("evaluations must be >= 0; windows, geometry_rows and geometry_bins >= 1")
        if "standard" not in self.rules:
            raise ValueError("rules must include 'standard': every comparison is against it")
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"unknown rules {unknown}; choose from {', '.join(RULES)}")
        if self.paper_eta < 0:
            raise ValueError(f"paper_eta must be >= 0 (0: no fixed-η arm), got {self.paper_eta}")
        for lr, steps in self.learning_rates:
            if not 0 < lr <= 1 or steps < 1:
                raise ValueError(f"learning_rates: need 0 < lr <= 1 and steps >= 1, got ({lr}, {steps})")
        settings.build(  # the run's own checks
            DistillConfig,
            {"steps": self.steps, "batch": self.batch, "lr": self.lr, "eval_examples": self.eval_examples}
            | {
                "answer_pattern": self.answer_pattern,
                "eval_samples": self.eval_samples,
                "max_new_tokens": self.max_new_tokens,
                "eval_max_new_tokens": self.eval_max_new_tokens,
            },
        )

    def with_seeds(self, seeds: int) -> "Plan":
        return replace(self, seeds=seeds)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        """The plan `to_dict` gave, after a trip through JSON (its lists back to the tuples a plan holds)."""
        fields = dict(data)
        for name in ("rules", "gammas", "lams"):
            fields[name] = tuple(fields[name])
        fields["learning_rates"] = tuple(tuple(point) for point in fields["learning_rates"])
        return cls(**fields)

    def arms(self) -> list["Arm"]:
        """Every (part, name) → configuration of this plan; the same configuration may appear in two parts."""
        arms = [Arm("rules", rule, rule) for rule in self.rules]
        if self.paper_eta:
            arms.append(Arm("cost", f"vgs (η = {self.paper_eta:g} fixed)", "vgs", eta=self.paper_eta))
        arms += [Arm("gamma", f"γ = {g:g}", "vgs", gamma=g) for g in self.gammas]
        arms += [
            Arm("lambda", f"λ = {lam:g}", "vgs_no_lp" if lam == 0 else "vgs", lam=lam if lam else 0.01)
            for lam in self.lams
        ]
        arms += [
            Arm("learning_rate", f"{rule} lr = {lr:g}", rule, lr=lr, steps=steps)
            for lr, steps in self.learning_rates
            for rule in LR_RULES
        ]
        return arms


@dataclass(frozen=True)
class Arm:
    """One configuration of one part; `config(plan, seed)` is the run it stands for."""

    part: str
    name: str
    rule: str
    gamma: float = 2.0
    lam: float = 0.01
    eta: float | str = "auto"
    lr: float | None = None  # None: the plan's
    steps: int | None = None  # None: the plan's

    def config(self, plan: Plan, seed: int) -> DistillConfig:
        steps = self.steps or plan.steps
        every = -(-steps // (plan.evaluations + 1)) if plan.evaluations else 0  # ceil: `evaluations` of them
        return settings.build(
            DistillConfig,
            {
                "steps": steps,
                "batch": plan.batch,
                "lr": self.lr if self.lr is not None else plan.lr,
                "seed": seed,
                "rule": self.rule,
                "gamma": self.gamma,
                "lam": self.lam,
                "eta": self.eta,
                "eval_every": every if every < steps else 0,
                "eval_examples": plan.eval_examples,
                "answer_examples": 0,
                "answer_pattern": plan.answer_pattern,
                "eval_samples": plan.eval_samples,
                "max_new_tokens": plan.max_new_tokens,
                "eval_max_new_tokens": plan.eval_max_new_tokens,
            },
        )

    def geometry_rows(self, plan: Plan) -> int:
        """The geometry (part 1) is measured in the rules' `standard` run, before and after its steps."""
        return plan.geometry_rows if (self.part, self.name) == ("rules", "standard") else 0


QUICK = Plan(
    name="quick",
    steps=100,
    evaluations=3,
    gammas=(1.0, 2.0, 4.0),
    lams=(0.0, 0.01, 1.0),
    learning_rates=((3e-4, 150), (1e-3, 100)),
    geometry_rows=64,
)
FULL = Plan(name="full")
PLANS = (QUICK, FULL)


# A world whose runs cost more has its own quick and full plans (the default world's are QUICK and FULL as they
# are), to keep its checks to 10 and 45 minutes on two cores. An evaluation in the reasoning world generates each
# held-out row's chain in both contexts (2.8 s for 400 rows, a third of a quick run) and a step samples 64-token
# chains. Its quick check evaluates 192 rows (three of evaluation's 64-row batches) once during a run, leaves out
# λ = 1 (the λ claim is λ = 0 against 0.01) and runs the smaller rate for 100 steps: 14 min 8 s as QUICK, 9 min
# 23 s as here (README). Its full check evaluates twice during a run, leaves out λ = 1 and the rate 3e-5 (in the
# first full run neither rule moved in its 600 steps: −0.7 and −0.3 points) and runs 3e-4 for the rules' 300
# steps: ~65 min as FULL, 29 min 14 s as here on a faster 2-core machine (where the quick check took 6 min 50 s).
PLAN_IN_WORLD = MappingProxyType(
    {
        "reasoning": MappingProxyType(
            {
                QUICK.name: MappingProxyType(
                    {
                        "eval_examples": 192,
                        "evaluations": 1,
                        "lams": (0.0, 0.01),
                        "learning_rates": ((3e-4, 100), (1e-3, 100)),
                    }
                ),
                FULL.name: MappingProxyType(
                    {
                        "evaluations": 2,
                        "lams": (0.0, 0.01, 0.1),
                        "learning_rates": ((1e-4, 600), (3e-4, 300), (1e-3, 300)),
                    }
                ),
            }
        )
    }
)


def for_world(plan: Plan) -> Plan:
    """`plan` with its world's own settings for a plan of its name (`PLAN_IN_WORLD`)."""
    return replace(plan, **PLAN_IN_WORLD.get(plan.world, {}).get(plan.name, {}))


def plan_named(name: str) -> Plan:
    """QUICK or FULL by name."""
    for plan in PLANS:
        if plan.name == name:
            return plan
    raise ValueError(f"no plan named {name!r}; choose from {', '.join(p.name for p in PLANS)}")


def step_seconds(config: DistillConfig, world: str = "default") -> float:
    """Estimated seconds of one training step of `config` (one thread, quiet machine, the world's toy pair)."""
    scale = config.batch / 32 * WORLD_COST[world][0]
    steering = config.steering
    if not steering.steers:
        return STANDARD_STEP_SECONDS * scale
    return (STEERED_STEP_SECONDS if steering.eta == "auto" else FIXED_ETA_STEP_SECONDS) * scale


def run_seconds(
    config: DistillConfig, geometry_rows: int = 0, eval_rows: int | None = None, world: str = "default"
) -> float:
    """Estimated seconds of one run: its steps, its evaluations, its geometry."""
    rows = min(config.eval_examples, eval_rows if eval_rows is not None else config.eval_examples)
    evaluations = 2 + ((config.steps - 1) // config.eval_every if config.eval_every else 0)  # before, during, after
    step_scale, eval_scale = WORLD_COST[world]
    return (
        RUN_OVERHEAD_SECONDS
        + config.steps * step_seconds(config, world)
        + rows * eval_scale * (TEACHER_REFERENCE_SECONDS + evaluations * EVAL_SECONDS)
        + 2 * geometry_rows * GEOMETRY_SECONDS * step_scale
    )


def estimate_seconds(plan: Plan, workers: int = 2, eval_rows: int | None = None) -> dict:
    """Estimated compute (one thread) and wall time of a plan on `workers` processes, from the constants above."""
    runs = {}
    for arm in plan.arms():
        for seed in range(plan.seeds):
            config = arm.config(plan, seed)  # one run per configuration: the geometry's is the longest (check.py)
            runs[config] = max(
                runs.get(config, 0.0), run_seconds(config, arm.geometry_rows(plan), eval_rows, plan.world)
            )
    compute = sum(runs.values())
    return {"runs": len(runs), "compute_seconds": compute, "wall_seconds": compute / max(workers, 1)}
