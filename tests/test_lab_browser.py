"""JupyterLab as a person uses it, in a real browser: `make lab`'s server, headless Chromium driven
by Playwright. The explorer runs with its own defaults (`run_folder = "runs/toy"`) from a kernel
started in `notebooks/`, opens on a query with its scatter and table, and redraws when A and the
query change; a chapter and the walkthrough run their first cells. Nothing in the repository is
touched: the server serves a copy of the notebooks beside a link to the package.

Needs Debian's `chromium` and the `playwright` package (`.ci/run` installs both). Set
RQAKIT_SCREENSHOT=path to keep a screenshot of the explorer (docs/explorer-lab.png).
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rqakit.stages import joint

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "rqakit-browser-test"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (.ci/run)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(toy_ws, tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 over a copy of notebooks/, with runs/toy the session's toy runs."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}; install Debian's chromium (.ci/run does)")
    joint.run(toy_ws, "static", seed=1, log=lambda *_: None)
    joint.run(toy_ws, "dynamic", seed=1, log=lambda *_: None)
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    (work / "rqakit").symlink_to(ROOT / "rqakit")                      # the repository root, as work_from_repository_root sees it
    (work / "runs").mkdir()
    (work / "runs" / "toy").symlink_to(toy_ws.root)
    settings = work / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for extension, body in (("notebook-extension/tracker", '{"windowingMode": "none"}'),   # every cell in the DOM
                            ("apputils-extension/notification", '{"fetchNews": "false"}')):
        path = settings / f"{extension}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_CONFIG_DIR": str(work / ".jupyter"),
           "JUPYTER_DATA_DIR": str(work / ".jupyter-data"), "JUPYTER_RUNTIME_DIR": str(work / ".jupyter-runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={work / 'notebooks'}", "--allow-root"],
        cwd=work / "notebooks", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 120 s")
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def open_notebook(browser, lab: str, name: str):
    """A page with `name` open and its kernel idle; console errors collected on page.errors."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"{lab}/lab/tree/{name}?reset&token={TOKEN}")          # reset: only this notebook open
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90_000)   # kernel started
    return page


def run_all(page) -> None:
    page.click("text=Run", timeout=30_000)
    page.click("text=Run All Cells", timeout=30_000)


def kit_errors(page) -> list[str]:
    """Tracebacks in the outputs, and console errors that are not the closed network's."""
    outputs = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                           ".jp-OutputArea-output .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    tracebacks = [t for t in outputs.all_inner_texts() if "Traceback" in t or "Error" in t]
    network = ("Failed to load resource", "net::ERR", "favicon", "Failed to fetch")
    return tracebacks + [e for e in page.errors if not any(n in e for n in network)]


def test_the_explorer_runs_with_its_defaults_and_redraws_in_place(lab, browser):
    page = open_notebook(browser, lab, "explorer.ipynb")
    start = time.time()
    run_all(page)
    image = page.locator(".widget-image")
    image.wait_for(timeout=180_000)
    page.wait_for_selector(".jp-OutputArea-output table", timeout=60_000)
    drawn = time.time() - start
    selects = page.locator(".widget-dropdown select")
    assert selects.count() == 3
    query = selects.nth(2)
    assert query.input_value() != ""                                  # it opens on a query
    first_image = image.get_attribute("src")
    assert first_image and first_image.startswith("blob:")
    first_table = page.locator(".jp-OutputArea-output table").last.inner_text()
    if os.environ.get("RQAKIT_SCREENSHOT"):   # the widgets at the top of the notebook's view, in Lab
        page.locator(".widget-vbox").last.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        page.screenshot(path=os.environ["RQAKIT_SCREENSHOT"])

    options = selects.nth(0).locator("option").all_inner_texts()
    other = next(o for o in options if o != selects.nth(0).input_value() and "bm25" in o)
    selects.nth(0).select_option(label=other)                          # change A
    page.wait_for_function("(src) => document.querySelector('.widget-image').src !== src", arg=first_image,
                           timeout=60_000)
    second_image = image.get_attribute("src")
    queries = query.locator("option").all()
    query.select_option(index=1 if query.input_value() == queries[0].get_attribute("value") else 0)
    page.wait_for_function("(src) => document.querySelector('.widget-image').src !== src", arg=second_image,
                           timeout=60_000)
    page.wait_for_function("(t) => { const ts = document.querySelectorAll('.jp-OutputArea-output table');"
                           " return ts.length && ts[ts.length - 1].innerText !== t; }", arg=first_table, timeout=60_000)
    assert not kit_errors(page), kit_errors(page)
    print(f"explorer drawn {drawn:.1f} s after Run All")
    page.close()


@pytest.mark.parametrize("name, cells", [("01_data.ipynb", 3), ("walkthrough.ipynb", 2)])
def test_a_chapter_and_the_walkthrough_run_their_first_cells(lab, browser, name, cells):
    page = open_notebook(browser, lab, name)
    page.locator(".jp-CodeCell").first.click()
    for _ in range(cells):
        page.keyboard.press("Shift+Enter")
    page.wait_for_function(f"() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].slice(0, {cells})"
                           ".every(p => /\\[\\d+\\]/.test(p.innerText))", timeout=180_000)
    assert not kit_errors(page), kit_errors(page)
    page.close()
