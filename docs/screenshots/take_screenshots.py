"""Refresh the README's screenshots: the real app at 1280x720 (a projector), headless Chromium.

    python docs/screenshots/take_screenshots.py [--port 8799]

Starts `streamlit run app.py` on the default toy pair ($VLOD_HOME, default ~/.cache/vlod; built first if
missing) with a fresh VLOD_HOME beside it (the same toy pair, no experiments: a fresh install), and saves, in
this folder: the home page as a first visitor sees it (with the tour's first step), then, with the tour
skipped, a shared link to each page's result, a scene edited in the scene builder, the Paper check page as a
fresh install shows it (the report shipped under docs/experiments/), the class demo going on, its results with
the verdict in words, and a run on the shipped example set ("my images") with every row before and after;
then, on the reasoning pair ($VLOD_HOME/toy-reasoning, built first if missing), a chain in page 1's token strip
and the Paper check's two worlds side by side. What is on screen is what the viewport shows, not the whole page: where the eye is.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 720}
QUESTION = "what+color+is+the+circle+%3F"
SCENE = "r0c0-square-blue%2Cr0c2-circle-yellow%2Cr3c3-triangle-red"  # its circle is edited to green


def wait_until_healthy(url: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"streamlit did not answer at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    from vlod_core.home import vlod_home

    fresh = Path(tempfile.mkdtemp(prefix="vlod-fresh-"))  # a fresh install: the toy pair, no local reports
    from vlod_core.toy.build import ensure_toy_pair

    ensure_toy_pair(world="reasoning")
    for pair in ("toy", "toy-reasoning"):
        (fresh / pair).symlink_to(vlod_home() / pair)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(args.port)],
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1", VLOD_HOME=str(fresh)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(url)
        shoot(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(fresh, ignore_errors=True)


def shoot(url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=300_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            first = browser.new_context(viewport=VIEWPORT).new_page()
            first.goto(url)
            expect(first.get_by_text("shared vocabulary", exact=False)).to_be_visible()
            settle(first)
            first.screenshot(path=str(HERE / "home.png"))

            context = browser.new_context(viewport=VIEWPORT)
            context.add_cookies([{"name": "vlod_tour", "value": "done", "url": url}])
            page = context.new_page()
            page.goto(f"{url}/Answers_and_tokens?sample=3&question={QUESTION}&seed=0&ablation=remove")
            expect(page.get_by_text("Token by token, the student", exact=False)).to_be_visible()
            settle(page)
            page.screenshot(path=str(HERE / "answers_and_tokens.png"))

            page.goto(f"{url}/Answers_and_tokens?scene={SCENE}&question={QUESTION}&seed=0&ablation=remove")
            expect(page.get_by_text("Teacher, with the image", exact=True)).to_be_visible()
            page.get_by_test_id("stSelectbox").filter(has=page.get_by_label("Row 1, column 3")).click()
            page.get_by_role("option", name="green ●", exact=True).click()  # one object edited
            expect(page.get_by_text("Before the edit → after", exact=True)).to_be_visible()
            page.get_by_text("Answer scored on both scenes", exact=True).scroll_into_view_if_needed()
            settle(page)
            page.screenshot(path=str(HERE / "scene_builder.png"))

            page.goto(f"{url}/Paper_check")
            expect(page.get_by_text("What a verdict means", exact=False)).to_be_visible()
            settle(page)
            page.screenshot(path=str(HERE / "paper_check.png"))

            page.goto(
                f"{url}/Gradient_angles?samples=31&seed=0&ablation=remove&bins=5&include=1&sample=3&question={QUESTION}"
            )
            expect(page.get_by_text("All parameters as one vector", exact=False)).to_be_visible()
            settle(page)
            page.screenshot(path=str(HERE / "gradient_angles.png"))

            page.goto(f"{url}/Distill_and_compare?sample=3&question={QUESTION}")
            expect(page.get_by_role("button", name="Run the class demo")).to_be_visible()
            settle(page)
            page.get_by_role("button", name="Run the class demo").click()
            expect(page.get_by_text("standard: step", exact=False).first).to_be_visible()
            page.wait_for_timeout(12_000)  # some curve to show
            expect(page.locator(".js-plotly-plot").first).to_be_visible()  # not between two of its redraws
            page.screenshot(path=str(HERE / "distill_running.png"))
            expect(page.get_by_text("Results of run", exact=False)).to_be_visible()
            verdict = page.get_by_text(re.compile(r"(ahead of|behind|level with) standard")).first
            expect(verdict).to_be_visible()
            settle(page)
            heading = page.get_by_text("Results of run", exact=False)
            heading.evaluate("e => e.scrollIntoView({block: 'start'})")  # the table and the verdict under it
            page.wait_for_timeout(1000)
            page.screenshot(path=str(HERE / "distill_and_compare.png"))

            page.goto(f"{url}/Distill_and_compare")
            page.get_by_text("My images", exact=True).click()
            page.get_by_role("button", name="Use the example set").click()
            expect(page.get_by_text("Steps set to", exact=False)).to_be_visible()
            page.get_by_test_id("stSidebar").get_by_role("button", name="Run", exact=True).click()
            heading = page.get_by_text("Every row of your set, before and after", exact=True)
            expect(heading).to_be_visible()
            settle(page)
            heading.scroll_into_view_if_needed()
            page.mouse.wheel(0, 300)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(HERE / "my_images.png"))

            page.goto(f"{url}/Answers_and_tokens?pair=toy-reasoning&sample=2&seed=0&ablation=remove")
            page.get_by_test_id("stSidebar").get_by_role("button", name="Ask").click()
            strip = page.get_by_test_id("stPlotlyChart").first
            expect(strip).to_contain_text("\\boxed{")
            settle(page)
            page.get_by_text("Token by token, the student's greedy answer", exact=False).evaluate(
                "e => e.scrollIntoView({block: 'start'})"
            )
            page.wait_for_timeout(1000)
            page.screenshot(path=str(HERE / "reasoning_token_strip.png"))

            page.goto(f"{url}/Paper_check?world=reasoning")
            heading = page.get_by_text("The two worlds side by side", exact=True)
            expect(heading).to_be_visible()
            settle(page)
            heading.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(HERE / "paper_check_two_worlds.png"))
        finally:
            browser.close()


DRAWN = """() => {
    const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'));
    const inView = charts.filter(c => c.getBoundingClientRect().top < window.innerHeight);
    return inView.every(c => c.querySelector('.main-svg'));
}"""


def settle(page) -> None:
    """Let the charts in view draw and the page stop moving."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(DRAWN, timeout=60_000)
    page.wait_for_timeout(2000)


if __name__ == "__main__":
    main()
