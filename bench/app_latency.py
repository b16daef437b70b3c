"""How long the app takes: each page's first render once the toy pair exists, and one `inspect` call.

    python bench/app_latency.py [--repeats 10]

Pages are rendered headless with Streamlit's AppTest in this process, the way the server runs them:
`home (cold)` includes importing the libraries and loading the pair into the cache (what the first visitor
waits for); the other pages are each a fresh session with the pair already cached. `inspect` is the median
of `vlod_core.inspection.inspect` on the toy pair (four greedy answers, one sample, four scoring passes).
Targets: a page's first render <= 10 s, one inspect <= 0.3 s. Uses $VLOD_HOME (default ~/.cache/vlod).

    python bench/app_latency.py --concurrency [--steps 60]

measures instead how runs of page 3 share the machine: one run alone, then two submitted at once, each a
worker process of the app's job registry (`vlod_app.jobs`), and for comparison the same two runs as two
threads of one process (how the app ran them before). A run is what page 3 starts with its defaults
(rules standard and vgs, batch 32, 200 held-out examples) with `--steps` steps; times are wall seconds
from submit to finish, worker start and pair loading included.

    python bench/app_latency.py --demo [--repeats 3] [--world reasoning]

times the class demo page 3 offers first (`vlod_app.jobs.class_demo()`: standard and VGS side by side, each
in a worker process as the server runs them) from submit to done, and prints each rule's held-out accuracy
before and after and the run's verdict line (`vlod_core.verdict`). Issue 21's target: <= 45 s, with a gain.
With `--world reasoning`, the same for what page 3 offers on the reasoning pair (that world's defaults).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's vlod_core and vlod_app, not an installed copy
PAGES = ("pages/1_Answers_and_tokens.py", "pages/2_Gradient_angles.py", "pages/3_Distill_and_compare.py")


def render(page: str | None) -> float:
    from streamlit.testing.v1 import AppTest

    started = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    if page:
        at.switch_page(page)
    at.run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise SystemExit(f"{page or 'app.py'} raised: {at.exception[0].value}")
    return seconds


def action(page: str, label: str) -> float:
    """Seconds for one click on a page whose first render is done (the pair already cached)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.switch_page(page)
    at.run()
    [button] = [b for b in at.button if b.label == label]
    started = time.perf_counter()
    button.click().run()
    seconds = time.perf_counter() - started
    if at.exception or at.error:
        raise SystemExit(f"{label!r} on {page} failed: {(at.exception or at.error)[0].value}")
    return seconds


def submitted_jobs(settings: dict, n: int, spec=None) -> list[tuple[float, object]]:
    """`n` page-3 jobs of `settings` on the toy pair (or `spec`'s), submitted at once to a job registry (worker
    processes, as the server runs them): each one's seconds from submit to done, and the finished job."""
    from vlod_app.jobs import JobRegistry
    from vlod_core.pair import PairSpec

    registry = JobRegistry(max_running=n, max_queued=0)
    try:
        started = time.perf_counter()
        jobs = [registry.submit(spec or PairSpec(), settings, []) for _ in range(n)]
        finished = {}
        while len(finished) < n:
            time.sleep(0.2)
            for job in jobs:
                job.touch()
                if job.done and job.id not in finished:
                    if job.error:
                        raise SystemExit(f"run failed: {job.error}")
                    finished[job.id] = time.perf_counter() - started
        return [(finished[job.id], job) for job in jobs]
    finally:
        registry.close()


def concurrency(steps: int) -> None:
    """One run alone, two runs at once as worker processes, two runs at once as threads of this process."""
    import threading

    import torch

    from vlod_app.jobs import DEFAULT_SETTINGS, distill_configs
    from vlod_core.distill import distill
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    settings = dict(DEFAULT_SETTINGS, steps=steps, eval_every=0)

    def processes(n: int) -> list[float]:
        return [seconds for seconds, _ in submitted_jobs(settings, n)]

    def threads(n: int) -> list[float]:
        pair = load_pair(PairSpec(), toy.folders(PairSpec()))
        torch.set_num_threads(1)
        configs = distill_configs(settings)
        times = [0.0] * n

        def one(i: int) -> None:
            started = time.perf_counter()
            for config in configs.values():
                distill(pair, config)
            times[i] = time.perf_counter() - started

        workers = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return times

    alone = processes(1)[0]
    print(f"{'one run alone (worker process)':<44} {alone:7.1f} s")
    pair_times = processes(2)
    print(
        f"{'two runs at once (worker processes)':<44} {max(pair_times):7.1f} s  "
        f"({', '.join(f'{t:.1f}' for t in pair_times)}; {max(pair_times) / alone:.2f}x one alone)"
    )
    thread_alone = threads(1)[0]
    thread_pair = threads(2)
    print(f"{'one run alone (thread, pair already loaded)':<44} {thread_alone:7.1f} s")
    print(
        f"{'two runs at once (threads of one process)':<44} {max(thread_pair):7.1f} s  "
        f"({', '.join(f'{t:.1f}' for t in thread_pair)}; {max(thread_pair) / thread_alone:.2f}x one alone)"
    )


def demo(repeats: int, world: str) -> None:
    """The class demo as page 3 submits it in toy world `world`, `repeats` times one after the other; median
    wall time."""
    from vlod_app.jobs import class_demo
    from vlod_core.pair import TOY, PairSpec
    from vlod_core.toy import TOY_REASONING
    from vlod_core.verdict import verdict

    name = TOY_REASONING if world == "reasoning" else TOY
    times = []
    for _ in range(repeats):
        [(seconds, job)] = submitted_jobs(class_demo(world), 1, PairSpec(teacher=name, student=name))
        times.append(seconds)
        cards = job.cards()
        if len(cards) < 2:
            raise SystemExit(f"the demo did not finish: {job.not_run()}")
        accuracy = {
            rule: f"{card.before['accuracy_image']:.3f} -> {card.after['accuracy_image']:.3f}"
            for rule, card in cards.items()
        }
        print(f"demo {seconds:6.1f} s  {accuracy}")
        for line in verdict({rule: [card] for rule, card in cards.items()}).text().splitlines():
            print(f"  {line}")
    target = "  (target <= 45 s)" if world == "default" else ""
    print(f"{'class demo, submit to done (median)':<44} {statistics.median(times):7.1f} s{target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed inspect calls (median reported)")
    parser.add_argument("--concurrency", action="store_true", help="measure concurrent page-3 runs instead")
    parser.add_argument("--steps", type=int, default=60, help="steps per rule in --concurrency runs")
    parser.add_argument("--demo", action="store_true", help="time page 3's class demo instead (--repeats runs)")
    parser.add_argument("--world", choices=("default", "reasoning"), default="default", help="--demo's toy world")
    args = parser.parse_args()
    if args.demo:
        demo(args.repeats, args.world)
        return
    if args.concurrency:
        concurrency(args.steps)
        return

    started = time.perf_counter()
    import streamlit  # noqa: F401 - counted in the cold render: the server pays the imports once too
    import torch

    from vlod_core.toy.build import default_toy_dir, is_built

    default_threads = torch.get_num_threads()  # the app's page runs may lower it (see below)

    imports = time.perf_counter() - started
    if not is_built(default_toy_dir()):
        raise SystemExit("build the toy pair first (python -m vlod_core toy build): this measures pages after it")
    cold = render(None) + imports
    print(f"{'home (cold: imports + pair load)':<38} {cold:6.2f} s")
    for page in (None, *PAGES):
        print(f"{(page or 'app.py').split('/')[-1]:<38} {render(page):6.2f} s")

    print(f"{'page 1: Ask (inspect + top-k)':<38} {action(PAGES[0], 'Ask'):6.2f} s")
    print(f"{'page 2: Measure the angles':<38} {action(PAGES[1], 'Measure the angles'):6.2f} s")

    from vlod_core.inspection import inspect
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair
    from vlod_core.toy import world

    pair = load_pair(PairSpec(), toy.folders(PairSpec()))
    examples = world.sample_examples(args.repeats + 1, seed=11)
    # the app runs small CPU models with one intra-op thread (vlod_app.state.set_threads_for)
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        inspect(pair, examples[0].image(), examples[0].question)  # warm-up
        times = []
        for i, example in enumerate(examples[1:]):
            started = time.perf_counter()
            inspect(pair, example.image(), example.question, seed=i)
            times.append(time.perf_counter() - started)
        print(
            f"{f'inspect, {threads} thread(s), median of {len(times)}':<38} "
            f"{statistics.median(times):8.3f} s   (min {min(times):.3f}, max {max(times):.3f})"
        )


if __name__ == "__main__":
    main()
