"""The real app in headless Chromium: upload a PNG and ask a question, then run a short distillation.

Starts `streamlit run app.py` on a free loopback port with VLOD_HOME pointing at the small test pair, and
drives it with Playwright (the Debian chromium, never a downloaded one). Screenshots go under tmp_path.
The server is always terminated, whatever happens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUESTION = "what color is the circle ?"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited early: {server.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit did not answer at {url} within {limit} s")


@pytest.fixture
def server(vlod_home):
    port = free_port()
    env = dict(os.environ, VLOD_HOME=str(vlod_home))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def test_upload_ask_then_distill_in_a_real_browser(server, examples, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    png = tmp_path / "shapes.png"
    examples[0].image().resize((128, 128)).save(png)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(server)
            expect(page.get_by_text("Model pair in use", exact=True)).to_be_visible()
            expect(page.get_by_text("shared vocabulary", exact=False)).to_be_visible()
            page.screenshot(path=str(tmp_path / "home.png"))

            # page 1: upload a PNG, ask a question, see the four answers and the tokens
            page.get_by_role("link", name="Answers and tokens").click()
            page.get_by_text("Upload an image", exact=True).click()
            page.locator('input[type="file"]').set_input_files(str(png))
            expect(page.get_by_text("Question", exact=True)).to_be_visible()
            question = page.get_by_label("Question", exact=True)
            question.fill(QUESTION)
            page.get_by_role("button", name="Ask").click()
            expect(page.get_by_text("Teacher, with the image", exact=True)).to_be_visible()
            for title in ("Teacher, without it", "Student, with the image", "Student, without it"):
                expect(page.get_by_text(title, exact=True)).to_be_visible()
            expect(page.get_by_text(f"“{QUESTION}”", exact=True)).to_be_visible()
            expect(page.get_by_text("Token by token", exact=True)).to_be_visible()
            page.screenshot(path=str(tmp_path / "answers.png"), full_page=True)

            # page 3: a 3-step run of standard and vgs, then before/after answers on the uploaded image
            page.get_by_role("link", name="Distill and compare").click()
            page.get_by_label("Steps", exact=True).fill("3")
            page.get_by_label("Batch (questions per step)", exact=True).fill("8")
            page.get_by_label("Held-out accuracy every k steps (0: before/after only)", exact=True).fill("0")
            page.get_by_role("button", name="Run", exact=True).click()
            expect(page.get_by_text("Results", exact=True)).to_be_visible(timeout=600_000)
            expect(page.get_by_text("Your image, before → after", exact=False)).to_be_visible()
            expect(page.get_by_text(f"standard · “{QUESTION}”", exact=True)).to_be_visible()
            expect(page.get_by_text(f"vgs · “{QUESTION}”", exact=True)).to_be_visible()
            expect(page.get_by_role("button", name="Run card (vgs, JSON)")).to_be_visible()
            page.screenshot(path=str(tmp_path / "distill.png"), full_page=True)
            assert not page.get_by_text("Traceback").count()
        finally:
            browser.close()
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("home.png", "answers.png", "distill.png"))
