"""The real app in headless Chromium: what AppTest cannot see (URLs, reloads, downloads, cookies).

Starts `streamlit run app.py` on a free loopback port with VLOD_HOME pointing at the small test pair, and
drives it with Playwright (the Debian chromium, never a downloaded one) at 1280x720. One test follows a
first-time visitor: the tour's first step, an upload and a question, a figure and a table downloaded, the
view's link opened in a fresh browser; the other reloads the page in the middle of a run and stops it from
there. Every `expect` waits up to 3 minutes (the first page load on a busy 2-core machine can take a
minute; Playwright's default is 5 s). Screenshots go under tmp_path. The server is always terminated.
"""

from __future__ import annotations

import os
import re
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
VIEWPORT = {"width": 1280, "height": 720}
WAIT_MS = 180_000

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


@pytest.fixture
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser):
    page = browser.new_context(viewport=VIEWPORT, accept_downloads=True).new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def pick(page, selectbox, option: str, exact: bool = True, tries: int = 6) -> None:
    """Choose `option` in a selectbox. A rerun that lands while the list is open closes it (on a loaded machine
    the rerun that drew the last answers may still be running), so open it again until the option shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(tries):
        selectbox.click()
        try:
            page.get_by_role("option", name=option, exact=exact).click(timeout=10_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"the option {option!r} never showed in the selectbox")


def menu(page):
    """The sidebar's page menu (`vlod_app/navigation.py`)."""
    return page.get_by_test_id("stSidebar").locator(".st-key-vlod_menu")


def download(page, button) -> tuple[str, bytes]:
    """Click a download button; the file's suggested name and its bytes."""
    with page.expect_download(timeout=WAIT_MS) as info:
        button.click()
    return info.value.suggested_filename, Path(info.value.path()).read_bytes()


def test_tour_upload_downloads_and_a_shared_link(server, browser, examples, tmp_path):
    from playwright.sync_api import expect

    png = tmp_path / "shapes.png"
    examples[0].image().resize((128, 128)).save(png)
    page = new_page(browser)
    page.goto(server)
    expect(page.get_by_text("shared vocabulary", exact=False)).to_be_visible()
    page.screenshot(path=str(tmp_path / "home.png"))

    # the tour's first step leads to the token strip on page 1
    expect(page.get_by_text("Guided tour, step 1 of 5.", exact=False)).to_be_visible()
    page.get_by_role("link", name="Start: Answers and tokens").click()
    expect(page.get_by_text("Guided tour, step 2 of 5.", exact=False)).to_be_visible()
    expect(page.get_by_text("token strip", exact=False).first).to_be_visible()

    # upload a PNG, ask a question: four greedy answers and the tokens
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Upload an image", exact=True).click()
    sidebar.locator('input[type="file"]').set_input_files(str(png))
    expect(sidebar.get_by_label("Question", exact=True)).to_be_visible()
    sidebar.get_by_label("Question", exact=True).fill(QUESTION)
    sidebar.get_by_role("button", name="Ask").click()
    for title in ("Teacher, with the image", "Teacher, without it", "Student, with the image", "Student, without it"):
        expect(page.get_by_text(title, exact=True)).to_be_visible()
    expect(page.get_by_text(f"“{QUESTION}”", exact=True)).to_be_visible()
    expect(page.get_by_text("Token by token, the student's greedy answer", exact=False)).to_be_visible()
    page.screenshot(path=str(tmp_path / "answers.png"))

    # a figure as PNG (plotly's export, a readable name) and the table as CSV
    name, data = download(page, page.get_by_test_id("stDownloadButton").filter(has_text="PNG").first)
    assert name == "vlod-answers-token-strip-shapes-png.png" and data.startswith(b"\x89PNG")
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    name, data = download(page, page.get_by_test_id("stDownloadButton").filter(has_text="CSV").first)
    assert name.endswith(".csv") and data.decode().startswith("token,std_kl,lang_kl,vis_kl,vds,logratio")

    # pick toy sample 3 and ask its own question: that view's link opens the same view in a fresh browser
    sidebar.get_by_text("Built-in toy sample", exact=True).click()
    expect(sidebar.get_by_text("toy sample 1:", exact=False)).to_be_visible()
    pick(page, sidebar.get_by_test_id("stSelectbox").filter(has_text="Toy sample"), "3: ", exact=False)
    expect(sidebar.get_by_text("toy sample 3:", exact=False)).to_be_visible()
    # the rerun that swaps the upload's sidebar for the sample's keeps the old form, faded, until it ends
    expect(sidebar.get_by_label("Sampling seed", exact=True)).to_have_count(1)
    sidebar.get_by_label("Sampling seed", exact=True).fill("4")
    sidebar.get_by_text("A sample from the student", exact=True).click()
    sidebar.get_by_role("button", name="Ask").click()
    expect(page.get_by_text("a sample from the student (temperature 1, seed 4)", exact=False)).to_be_visible()
    answer = page.get_by_test_id("stMarkdownContainer").filter(has_text="Token by token").inner_text()
    page.get_by_role("button", name="Copy link").click()
    link = page.get_by_test_id("stCode").first.inner_text().strip()
    assert "sample=3" in link and "seed=4" in link and "temperature=1" in link and link.startswith(server)

    other = new_page(browser)
    other.goto(link)
    expect(other.get_by_text("a sample from the student (temperature 1, seed 4)", exact=False)).to_be_visible()
    assert other.get_by_test_id("stMarkdownContainer").filter(has_text="Token by token").inner_text() == answer
    expect(other.get_by_test_id("stSidebar").get_by_text("3: ", exact=False).first).to_be_visible()

    # skipping the tour is remembered by this browser (a cookie), not only by the tab
    page.get_by_role("button", name="Skip the tour").click()
    expect(page.get_by_text("Guided tour, step", exact=False)).to_have_count(0)
    page.reload()
    expect(page.get_by_text("a sample from the student (temperature 1, seed 4)", exact=False)).to_be_visible()
    expect(page.get_by_text("Guided tour, step", exact=False)).to_have_count(0)
    assert not page.get_by_text("Traceback").count() and not other.get_by_text("Traceback").count()


def test_a_reload_during_a_run_shows_its_progress_and_stop(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = new_page(browser)
    page.goto(f"{server}/Distill_and_compare")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_label("Steps", exact=True)).to_be_visible()
    sidebar.get_by_label("Steps", exact=True).fill("2000")
    sidebar.get_by_label("Batch (answers per step)", exact=True).fill("8")
    sidebar.get_by_label("Held-out accuracy every k steps (0: before/after only)", exact=True).fill("0")
    sidebar.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_text("standard: step", exact=False)).to_be_visible()
    expect(sidebar.get_by_role("button", name="Run", exact=True)).to_be_disabled()
    assert "run=" in page.url
    page.screenshot(path=str(tmp_path / "running.png"))

    page.reload()  # the run goes on; the reloaded page finds it by the id in the URL
    expect(page.get_by_text("standard: step", exact=False)).to_be_visible()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    expect(sidebar.get_by_label("Steps", exact=True)).to_have_value("2000")
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Results of run", exact=False)).to_be_visible()
    expect(page.get_by_text("not run — the run ended before this rule started", exact=False)).to_be_visible()
    expect(page.get_by_text("Your image, before → after", exact=False)).to_be_visible()
    expect(page.get_by_role("button", name="Run card (standard, JSON)")).to_be_visible()
    page.screenshot(path=str(tmp_path / "distill.png"), full_page=True)
    assert not page.get_by_text("Traceback").count()


def test_a_scene_edit_changes_the_answer_and_paper_check_renders(server, browser, toy_pair, experiments_home):
    """Build a scene (by its link, then the grid), ask, change one object: the teacher's answer changes beside
    the old one. Then the Paper check page draws a tiny report's claims table and figures."""
    import urllib.parse

    from playwright.sync_api import expect
    from test_app_paper_check import TINY
    from test_app_scene import QUESTION as COLOUR_QUESTION
    from test_app_scene import colour_edit

    from vlod_core.experiments import run_experiments
    from vlod_core.pair import PairSpec
    from vlod_core.toy.scenes import decode_scene
    from vlod_core.toy.source import toy_data

    before, after, teacher_before, teacher_after = colour_edit(toy_pair)
    new_colour = decode_scene(after)[0].colour
    page = new_page(browser)
    page.context.add_cookies([{"name": "vlod_tour", "value": "done", "url": server}])
    page.goto(f"{server}/Answers_and_tokens")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Build a scene", exact=True).click()
    expect(page.get_by_text("What the model sees: the 64×64 input", exact=False)).to_be_visible()
    page.goto(f"{server}/Answers_and_tokens?scene={urllib.parse.quote(before)}")
    expect(page.get_by_label("Row 2, column 2")).to_be_visible()
    sidebar.get_by_label("Question", exact=True).fill(COLOUR_QUESTION)
    sidebar.get_by_role("button", name="Ask").click()
    expect(page.get_by_text("Teacher, with the image", exact=True)).to_be_visible()
    pick(page, page.get_by_test_id("stSelectbox").filter(has=page.get_by_label("Row 2, column 2")), f"{new_colour} ●")
    expect(page.get_by_text("Before the edit → after", exact=True)).to_be_visible()
    line = page.get_by_test_id("stMarkdownContainer").filter(has_text="Teacher, with the image:").first
    expect(line).to_contain_text(f"{teacher_before} →")
    expect(line).to_contain_text(teacher_after.split()[-1])
    expect(page.get_by_text("Each token's visual term, the same answer", exact=False)).to_be_visible()
    expect(page).to_have_url(re.compile(r"scene=.*before=|before=.*scene="))  # the URL is written after the render

    data = toy_data(TINY.eval_examples, show_rows=0)
    run_experiments(TINY, PairSpec(), data, experiments_home / "tiny", workers=0, pair=toy_pair)
    page.goto(f"{server}/Paper_check")
    expect(page.get_by_text("How a verdict is decided", exact=False)).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    expect(page.get_by_test_id("stSidebar").get_by_role("button", name="Run the quick check")).to_be_enabled()
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()


def test_my_images_upload_a_zipped_folder_run_and_see_every_row(server, browser, tmp_path):
    """Issue 8's flow in a real browser: upload a zipped image folder of two rows, run the steps fitted to its
    size (issue 21), see both rows before and after beside the teacher's answers. (Typing questions into the editable table is
    `test_app_pages.py::test_my_images_typed_questions_preview_and_skipped_rows`: the grid is a canvas, and
    clicking its cells by coordinates was flaky here.)"""
    import json
    import zipfile

    from PIL import Image
    from playwright.sync_api import expect

    archive = tmp_path / "my_set.zip"
    with zipfile.ZipFile(archive, "w") as folder:
        for colour, question in (("red", "what color is it ?"), ("blue", "what shape is it ?")):
            path = tmp_path / f"{colour}.png"
            Image.new("RGB", (64, 64), colour).save(path)
            folder.write(path, f"{colour}.png")
        rows = [{"file_name": "red.png", "question": "what color is it ?"},
                {"file_name": "blue.png", "question": "what shape is it ?"}]  # fmt: skip
        folder.writestr("metadata.jsonl", "\n".join(json.dumps(row) for row in rows))
    page = new_page(browser)
    page.goto(f"{server}/Distill_and_compare")
    page.get_by_text("My images", exact=True).click()
    expect(page.get_by_text("64×64 scenes of coloured shapes", exact=False)).to_be_visible()
    page.get_by_text("A zipped image folder", exact=True).click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="A zip of an image folder")
    uploader.locator("input[type=file]").set_input_files(str(archive))
    expect(page.get_by_text("only 2 rows: trained and evaluated on the same rows", exact=False)).to_be_visible()
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Steps set to 2 for your 2 training rows", exact=False)).to_be_visible()  # fitted
    sidebar.get_by_label("Batch (answers per step)", exact=True).fill("8")
    sidebar.get_by_role("button", name="Run", exact=True).click()
    heading = page.get_by_text("Every row of your set, before and after", exact=True)
    expect(heading).to_be_visible()
    heading.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "my_images.png"))
    rows = page.get_by_test_id("stDataFrame").filter(has_text="teacher (image)").first
    expect(rows).to_contain_text("what color is it ?")
    expect(rows).to_contain_text("what shape is it ?")
    expect(page.get_by_text("Closeness to the teacher, before and after", exact=False)).to_be_visible()
    assert not page.get_by_text("Traceback").count()


def test_a_gradient_angles_link_copied_before_measuring_reopens_its_sample(server, browser):
    """Issue 21, item 6: page 2's link before anything is measured (`?sample=5&question=…`) opens on toy
    sample 5 in a fresh browser (it opened on sample 1, silently, and sample 1 then spread to the other pages)."""
    import urllib.parse

    from playwright.sync_api import expect

    question = "how many shapes are there ?"
    page = new_page(browser)  # a fresh browser context: no session, no cookie
    page.goto(f"{server}/Gradient_angles?sample=5&question={urllib.parse.quote(question)}")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text(f"toy sample 5: {question}", exact=False).first).to_be_visible()
    expect(page.get_by_text("Measure the angles (in the sidebar) to see them.", exact=True)).to_be_visible()
    assert "sample=5" in page.url and not sidebar.get_by_text("toy sample 1:", exact=False).count()
    menu(page).get_by_role("link", name="Answers and tokens").click()  # same session
    expect(page.get_by_test_id("stSidebar").get_by_text("toy sample 5:", exact=False).first).to_be_visible()
    expect(page).to_have_url(re.compile(r"sample=5"))  # and its link says so
    assert not page.get_by_text("Traceback").count()


def test_the_menu_names_the_home_page_and_back_returns_to_the_page_before(server, browser):
    """Issue 21, item 7: the sidebar listed the home page as "app", and Back after opening a page needed two
    presses (the page's first entry in the history had no parameters; its own write pushed a second one)."""
    from playwright.sync_api import expect

    page = new_page(browser)
    page.context.add_cookies([{"name": "vlod_tour", "value": "done", "url": server}])
    page.goto(server)
    expect(page.get_by_text("shared vocabulary", exact=False)).to_be_visible()
    links = [link.inner_text().split("\n")[-1] for link in menu(page).get_by_role("link").all()]  # after the icon
    assert links == ["Home", "Answers and tokens", "Gradient angles", "Distill and compare", "Paper check"], links
    assert not page.get_by_test_id("stSidebarNav").count()  # Streamlit's own menu, with "app", is off
    menu(page).get_by_role("link", name="Gradient angles").click()
    expect(page.get_by_text("Measure the angles (in the sidebar) to see them.", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/Gradient_angles\?.*sample=1"))
    angles = page.url
    menu(page).get_by_role("link", name="Answers and tokens").click()
    expect(page.get_by_role("button", name="Ask")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/Answers_and_tokens\?"))
    page.go_back()  # one press: the angles page as it was, its parameters included
    expect(page).to_have_url(angles)
    expect(page.get_by_text("Measure the angles (in the sidebar) to see them.", exact=True)).to_be_visible()
    page.go_back()
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/?$"))
    expect(page.get_by_text("shared vocabulary", exact=False)).to_be_visible()
    assert not page.get_by_text("Traceback").count()


@pytest.fixture
def reasoning_server(reasoning_home, server):
    """The app's server, with the small reasoning pair built beside the default one under its VLOD_HOME."""
    return server


def test_the_reasoning_pair_answers_a_question_with_a_chain_in_the_token_strip(reasoning_server, browser, tmp_path):
    """Issue 19: choose the reasoning pair on the home page, ask a toy sample's question on page 1, and see the
    student's chain, `<reason>` to `\\boxed{…}`, wrapped into lines in the token strip."""
    from playwright.sync_api import expect

    page = new_page(browser)
    page.context.add_cookies([{"name": "vlod_tour", "value": "done", "url": reasoning_server}])
    page.goto(reasoning_server)
    expect(page.get_by_text("shared vocabulary", exact=False)).to_be_visible()
    page.get_by_text("Toy reasoning pair (built in)", exact=True).click()
    page.get_by_role("button", name="Check and use this pair").click()
    expect(page.get_by_text("toy reasoning pair (student ← teacher) —", exact=False)).to_be_visible()
    expect(page).to_have_url(re.compile(r"pair=toy-reasoning"))
    menu(page).get_by_role("link", name="Answers and tokens").click()
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("button", name="Ask")).to_be_enabled()
    sidebar.get_by_role("button", name="Ask").click()
    expect(page.get_by_text("Token by token, the student's greedy answer", exact=False)).to_be_visible()
    strip = page.get_by_test_id("stPlotlyChart").first
    strip.scroll_into_view_if_needed()
    for marker in ("<reason>", "</reason>", "\\boxed{", "orange frame"):
        expect(strip).to_contain_text(marker)
    expect(page.get_by_text("Right final answer for this toy sample", exact=False)).to_be_visible()
    page.screenshot(path=str(tmp_path / "reasoning_answers.png"), full_page=True)
    assert "pair=toy-reasoning" in page.url and not page.get_by_text("Traceback").count()
