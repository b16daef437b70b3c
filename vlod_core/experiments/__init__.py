"""The paper check (issue 13): every experiment of the paper on a pair and data set, with seeds, standard
errors and a verdict per claim.

- `plan`     what runs: `Plan`, `QUICK`, `FULL`, the arms, the time estimate;
- `runner`   running tasks once each on all cores, with a cache keyed by configuration, pair and data;
- `analysis` means, standard errors, paired comparisons, the claims and the verdict rules;
- `figures`  plotly figures of a results dict; `report` the self-contained HTML page;
- `check`    the whole check in one call (`run_experiments`), and `latest_results` for the app.
"""

from vlod_core.experiments.check import CheckResult, default_out_dir, latest_results, load_results, run_experiments
from vlod_core.experiments.plan import FULL, PLANS, QUICK, Plan, estimate_seconds, plan_named
from vlod_core.experiments.runner import Progress

__all__ = [
    "FULL",
    "PLANS",
    "QUICK",
    "CheckResult",
    "Plan",
    "Progress",
    "default_out_dir",
    "estimate_seconds",
    "latest_results",
    "load_results",
    "plan_named",
    "run_experiments",
]
