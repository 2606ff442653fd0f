"""A real browser against `streamlit run app.py`: Debian's Chromium driven by Playwright.

Skipped with a reason when /usr/bin/chromium is missing, unless HIERPOLY_REQUIRE_BROWSER=1
(CI, see .ci/run), where a missing browser is a failure.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hierpoly.jobs import records, scheduler
from hierpoly.results.store import Store
from hierpoly.views.widgets import live_job

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TINY = "d=4&n=256&m2=50&steps=600&n_test=256"
PAGES = {"": "Three-layer networks learn hierarchical polynomials", "Explore": "Explore one run",
         "Figure_2": "Figure 2", "Results": "Results", "Learn": "A guided tour"}


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test"
    if os.environ.get("HIERPOLY_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (HIERPOLY_REQUIRE_BROWSER=1)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _streamlit(store_dir: Path, log_path: Path, **env_vars: str):
    """`streamlit run app.py` on a free loopback port with the given store (and env); yields its base URL, then stops it."""
    port = _free_port()
    env = {**os.environ, "HIERPOLY_CACHE_DIR": str(store_dir), "HIERPOLY_LOAD_PRECOMPUTED": "0", **env_vars}
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start (see {log.name})")
        time.sleep(0.5)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run app.py` on a free port with its own empty store; yields (base URL, store dir)."""
    _require_browser()
    store_dir = tmp_path_factory.mktemp("browser") / "store"
    with _streamlit(store_dir, tmp_path_factory.mktemp("logs") / "streamlit.log") as base:
        yield base, store_dir
        store = Store(store_dir)
        for job in records.list_jobs(store):
            if job.status in records.LIVE:
                scheduler.cancel(job.job_id, store)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()


def test_every_page_opens(server, browser):
    base, _ = server
    page = browser.new_page()
    for path, title in PAGES.items():
        page.goto(f"{base}/{path}")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        _no_exception(page)
    page.close()


FEATURE_CHART = re.compile(r"Learned feature vs p\(x\)|Step [0-9,]+: corr\(g, p\)")


def test_run_live_then_share(server, browser):
    base, store_dir = server
    page = browser.new_page()
    page.goto(f"{base}/Explore?{TINY}")
    run = page.get_by_role("button", name="▶ Run")
    run.wait_for(timeout=60_000)
    run.click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)  # live progress
    page.get_by_text("Stored result").first.wait_for(timeout=180_000)  # then the result,
    page.get_by_text(FEATURE_CHART).first.wait_for(timeout=60_000)  # with the learned feature (replayed)
    _no_exception(page)
    shared = page.url
    assert "d=4" in shared and "n=256" in shared
    assert len(Store(store_dir)) == 1

    other = browser.new_page()  # a colleague opens the shared link: the same run, from the store
    other.goto(shared)
    other.get_by_text("Stored result").first.wait_for(timeout=60_000)
    other.get_by_text(FEATURE_CHART).first.wait_for(timeout=60_000)
    assert other.get_by_text("feature correlation").count() >= 1
    _no_exception(other)
    other.close()
    page.close()


def _cut_metric_labels(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetricLabel"]')]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""")


def test_home_hero_and_a_shared_collapse_link(server, browser):
    base, store_dir = server
    _store_bundle(store_dir)
    for width, height in ((1400, 1000), (1024, 768)):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(base)
        page.get_by_text("Each d against n/d^k").first.wait_for(timeout=60_000)  # the hero chart
        assert _cut_metric_labels(page) == []
        page.goto(f"{base}/Figure_2?preset=cpu&x=n_over_dk&baselines=kernel")
        page.get_by_text("Figure 2 against n / d^3").first.wait_for(timeout=60_000)
        assert _cut_metric_labels(page) == []
        # κ and the theory's value beside it, above the fold
        for text in ("κ (seed median, at 0.9)", "κ ≈ k = 3"):
            box = page.get_by_text(text, exact=True).first.bounding_box()
            assert box is not None and box["y"] + box["height"] <= height, (text, box, width)
        _no_exception(page)
        if width == 1400:  # the figure's HTML download carries plotly.js itself: it opens offline
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="Figure (interactive HTML)").click()
            html = Path(download.value.path()).read_text()
            assert re.search(r"plotly\.js v\d", html) and not re.search(r"<script[^>]*\bsrc=", html)
            assert "Figure 2 against n" in html  # this figure, not an empty page
        page.close()


def _store_bundle(store_dir) -> None:
    """The shipped bundle in the server's store (the server itself starts empty for the run tests)."""
    from hierpoly.results.bundles import import_bundle

    store = Store(store_dir)
    if len(store) < 100:
        import_bundle(store, (REPO / "cache" / "precomputed" / "cpu.zip").read_bytes())


# While a job's live panel shows (its progress bar), every progress line and chart title the page draws, recorded
# by the page itself at each change of the DOM: no poll from the test, so a short phase is seen if it was shown.
OBSERVER = """
window.__shown = new Set();
new MutationObserver(() => {
  const progress = [...document.querySelectorAll('[data-testid="stProgress"]')];
  if (!progress.length) return;  // not live: a stored result's replay draws titles of its own
  for (const e of progress) window.__shown.add('progress ' + e.textContent.trim());
  for (const e of document.querySelectorAll('text.gtitle')) window.__shown.add('title ' + e.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_demo_run_shows_phases_and_a_moving_scatter(server, browser):
    base, store_dir = server
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    page.add_init_script(OBSERVER)
    page.goto(f"{base}/Explore?d=5&n=500&m2=50&steps=20000&tol=0.0&feature_tol=0.0&n_test=256&n_eval=4194304&seed=11")
    page.get_by_role("button", name="▶ Run").click()
    page.get_by_text("Stored result").first.wait_for(timeout=360_000)
    shown = page.evaluate("() => [...window.__shown]")
    # the progress line in the evaluating phase (the phase line above it names every phase all along)
    assert any(line.startswith("progress ") and "evaluating: the final test loss" in line for line in shown), shown
    titles = {line[len("title "):] for line in shown if line.startswith("title ") and FEATURE_CHART.match(line[6:])}
    job = records.get(records.list_jobs(Store(store_dir))[0].job_id, Store(store_dir))  # with all its rows
    assert any(row.is_history and row.feature_sample for row in job.progress)
    trained = [row.seconds for row in job.progress if row.phase == "training"]
    # the live scatter moved at least twice while training, where training outlasted a few redraws (3000 steps
    # once took under a redraw on an idle CPU: only the final step was seen)
    if max(trained) - min(trained) > 3 * LIVE_PANEL_SECONDS:
        assert len(titles) >= 2, (shown, max(trained) - min(trained))
    _no_exception(page)
    page.close()


def _import_on_results_page(browser, base: str, bundle: Path):
    """A new page on Results with `bundle` uploaded and Import pressed."""
    page = browser.new_page()
    page.goto(f"{base}/Results")
    page.get_by_role("heading", name="Import a bundle").wait_for(timeout=60_000)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bundle))
    page.get_by_text(bundle.name).first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Import").click()
    return page


def test_bad_bundle_is_refused(server, browser, tmp_path):
    base, store_dir = server
    before = len(Store(store_dir))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip file")
    page = _import_on_results_page(browser, base, bad)
    page.get_by_text("Bundle refused").first.wait_for(timeout=30_000)
    assert len(Store(store_dir)) == before
    page.close()


def test_results_imports_a_good_bundle_and_exports_it_back(server, browser, tmp_path):
    """A real bundle goes in through the page, and the page's export carries exactly that result back out."""
    from hierpoly.config import RunConfig
    from hierpoly.jobs import runner
    from hierpoly.results import bundles
    from hierpoly.results.codec import to_bytes

    base, store_dir = server
    ended = runner.execute(RunConfig(d=3, n=64, m2=10, steps=20, n_test=64, n_eval=256, seed=7))
    source = Store(tmp_path / "source")
    source.put(ended.result)
    key = ended.result.key
    good = tmp_path / "good.zip"
    good.write_bytes(bundles.export_bundle(source, [key]))

    page = _import_on_results_page(browser, base, good)
    page.get_by_text("Imported 1 result(s)").first.wait_for(timeout=30_000)
    # the encoded bytes, not Result ==, which compares only config, status, message and metrics
    assert Store(store_dir).raw(key) == to_bytes(ended.result)

    page.reload()
    selection = page.get_by_label("Select runs to open, compare, delete or export")
    selection.wait_for(timeout=60_000)
    selection.click()
    page.keyboard.type(key[:8])  # the labels end with the key's first characters
    page.get_by_role("option", name=re.compile(key[:8])).first.click()
    page.keyboard.press("Escape")  # close the dropdown that covers the buttons below it
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Export selection as a bundle").click()
    exported = bundles.read_bundle(Path(download.value.path()).read_bytes())
    assert list(exported) == [key] and to_bytes(exported[key]) == to_bytes(ended.result)  # curves, samples, meta too
    _no_exception(page)
    page.close()


def test_a_deep_link_as_a_fresh_servers_first_request_keeps_the_navigation(browser, tmp_path):
    """A classroom link is often the first thing a server is asked for: it must still read Home, Explore, …"""
    from playwright.sync_api import expect

    with _streamlit(tmp_path / "store", tmp_path / "streamlit.log") as base:
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(f"{base}/Explore?d=5&n=500&seed=3")
        page.get_by_text("Explore one run").first.wait_for(timeout=120_000)
        nav = page.locator('[data-testid="stSidebarNav"] a')
        nav.first.wait_for(timeout=30_000)
        labels = [" ".join(a.inner_text().split()) for a in nav.all()]
        assert [label.split()[-1] for label in labels] == ["Home", "Explore", "2", "Results", "Learn"], labels
        assert "d=5" in page.url
        # the number box may show its blank 0 for a moment under load before the session's value arrives
        expect(page.get_by_role("spinbutton", name="d: input dimension")).to_have_value("5", timeout=30_000)
        _no_exception(page)
        page.close()


# ------------------------------------------------------------------ a classroom
WARM_RESULT_S = 15  # once the sidebar says ready, a class's click shows its result within this
RESULT = re.compile(r"(has not )?found p (yet )?\(correlation")  # the tour's run, stored: found or not
STUDENTS = 6
LIVE_SCATTER = re.compile(r"Step ([0-9,]+): corr\(g, p\)")
LIVE_PANEL_SECONDS = inspect.signature(live_job).parameters["every"].default


# What the page shows: every 100 ms, the feature scatter's title (live or replayed), the progress line and the
# phase line, and whether the result is there; and the scatter's title again after every change to the page, which
# a starved browser's timer can miss (a frame that arrived and left between two late polls). A poll from the test
# itself would take turns over six pages and could miss a frame that a student's screen did show.
RECORDER = """
window.__seen = [];
const scatterTitles = () => [...document.querySelectorAll('text.gtitle, figcaption')]
  .filter(e => getComputedStyle(e).visibility === 'visible').map(e => e.textContent.replace(/^replay · /, ''));
const resultShown = () => [...document.querySelectorAll('[data-testid^="stAlert"]')]
  .some(e => /found p (yet )?\\(correlation/.test(e.textContent) && getComputedStyle(e).visibility === 'visible');
new MutationObserver(() => {
  const titles = scatterTitles();
  if (titles.length) window.__seen.push({t: Date.now(), titles, progress: [], phases: [], result: resultShown()});
}).observe(document, {subtree: true, childList: true, characterData: true});
setInterval(() => {
  const titles = scatterTitles();
  const progress = [...document.querySelectorAll('[data-testid="stProgress"]')].map(e => e.innerText);
  const phases = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')].map(e => e.innerText)
    .filter(text => text.includes(' → ') && /compil|train|evaluat/.test(text));
  const result = /found p (yet )?\\(correlation/.test(document.body.innerText);
  window.__seen.push({t: Date.now(), titles, progress, phases, result});
}, 100);
"""


def _cut_metrics(page) -> list[str]:
    """Metric labels or values the browser draws cut short (wider than their box)."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '[data-testid="stMetricLabel"], [data-testid="stMetricValue"]')]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""")


def _controls(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('button, [data-testid="stFileUploader"]')]
        .map(e => e.innerText || e.getAttribute('data-testid') || '')""")


def _watched_before_the_result(seen: list[dict]) -> tuple[set, set]:
    """From a page's recording: the phase and progress lines, and the feature scatter's steps, shown before the
    first frame with the result."""
    before = []
    for frame in seen:
        if frame["result"]:
            break
        before.append(frame)
    lines = {line for frame in before for line in frame["phases"] + frame["progress"]}
    steps = {m.group(1) for frame in before for title in frame["titles"] if (m := LIVE_SCATTER.match(title))}
    return lines, steps


def _teachers_link(browser, base: str) -> str:
    """The classroom link Learn gives a teacher by default, once the warm worker is ready."""
    teacher = browser.new_page(viewport={"width": 1400, "height": 1000})
    teacher.goto(f"{base}/Learn")
    teacher.get_by_role("heading", name="For teachers: a classroom link").wait_for(timeout=120_000)
    # the server listens on 127.0.0.1: the page says so and shows the command that serves a class
    teacher.get_by_text("listens on 127.0.0.1 only").first.wait_for(timeout=30_000)
    teacher.get_by_text("Ready: runs start warm").first.wait_for(timeout=300_000)  # the line redraws itself
    teacher.locator('[data-testid="stCode"]').filter(has_text="lock=1").first.wait_for(timeout=60_000)  # after a rerun
    codes = teacher.locator('[data-testid="stCode"]').all_inner_texts()
    assert any(" ".join(code.split()).startswith("HIERPOLY_MODE=classroom streamlit run app.py --server.address "
                                                 "0.0.0.0") for code in codes), codes
    link = next(" ".join(code.split()) for code in codes if "lock=1" in code).replace(" ", "")
    assert link.startswith(base + "/Explore?"), (link, base)
    _no_exception(teacher)
    teacher.close()
    return link


def test_a_class_of_six_watches_the_teachers_default_link_train_with_a_thousand_results_stored(browser, tmp_path):
    """Classroom mode, every shipped result stored (over 1,000), the teacher's default link from Learn;
    six students click its Run within a second. Every page shows a phase line and at least two frames of the
    learned feature against p (live, or played back when training outran the redraws) before the result,
    and the result within 15 s of its click."""
    from hierpoly.jobs import warmup
    from hierpoly.results import bundles
    from hierpoly.views import forms, tour

    store_dir = tmp_path / "store"
    for bundle in sorted((REPO / "cache" / "precomputed").glob("*.zip")):  # every shipped result
        bundles.import_bundle(Store(store_dir), bundle.read_bytes())
    assert len(Store(store_dir)) >= 1000
    with _streamlit(store_dir, tmp_path / "streamlit.log", HIERPOLY_MODE="classroom", HIERPOLY_WARM="") as base:
        link = _teachers_link(browser, base)
        params = forms.values_from_params(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))).values
        # the default runs something new: a fresh seed, never the shipped tour run, nothing stored
        assert int(params["seed"]) != tour.tour_config().seed
        assert not Store(store_dir).has(tour.tour_config(seed=int(params["seed"])).key())

        contexts = [browser.new_context(viewport={"width": 1024, "height": 768} if i % 2 else
                                        {"width": 1400, "height": 1000}) for i in range(STUDENTS)]
        pages = [context.new_page() for context in contexts]
        for page in pages:
            page.add_init_script(RECORDER)
            page.goto(link)
        runs = [page.get_by_role("button", name="▶ Run") for page in pages]
        for run in runs:
            run.wait_for(timeout=120_000)
            assert run.is_enabled()
        handles = [run.element_handle() for run in runs]
        clicked = []
        for handle in handles:  # a plain DOM click each: all six within a second
            clicked.append(time.time())
            handle.evaluate("b => b.click()")
        assert clicked[-1] - clicked[0] < 1.0, clicked
        done = [False] * STUDENTS
        while not all(done) and time.time() - clicked[0] < 60:
            done = [d or page.evaluate("() => window.__seen.some(frame => frame.result)")  # shown, not only sent
                    for d, page in zip(done, pages)]
            time.sleep(0.2)
        store = Store(store_dir)
        (job,) = records.list_jobs(store)  # six clicks, one shared job
        job = records.get(job.job_id, store)  # with all its rows (a finished job is listed with its newest)
        print(f"the job: queued {job.created - clicked[0]:.1f} s after the first click, trained "
              f"{job.progress[-1].seconds:.1f} s, done {job.updated - clicked[0]:.1f} s after it (load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        for i, page in enumerate(pages):
            seen = page.evaluate("() => window.__seen")
            shown = next((frame["t"] / 1000 for frame in seen if frame["result"]), None)
            lines, steps = _watched_before_the_result(seen)
            if os.environ.get("DEBUG_RECORDER"):
                last = None
                for frame in seen:
                    now = (frame["titles"], frame["progress"], frame["result"])
                    if now != last:
                        print(round(frame["t"] / 1000 - clicked[i], 2), now)
                        last = now
            print(f"student {i}: result {None if shown is None else round(shown - clicked[i], 1)} s after the "
                  f"click, {len(steps)} scatter frames before it, lines {sorted(lines)[:3]}")
            assert shown is not None and shown - clicked[i] <= WARM_RESULT_S, (i, shown and shown - clicked[i])
            assert lines, i  # a phase line or a progress line before the result
            assert len(steps) >= 2, (i, steps)  # the feature moved on the page: live or played back
            _no_exception(page)
        assert job.pid == warmup.readiness(store).pid  # the warm worker trained it

        # nothing that deletes or imports, on any page a student can open; no metric cut at a projector's size
        student = pages[1]
        assert student.viewport_size == {"width": 1024, "height": 768}
        assert _cut_metrics(student) == []
        for path in ("Results", "Explore", "Learn"):
            student.goto(f"{base}/{path}")
            student.get_by_role("heading").first.wait_for(timeout=60_000)
            student.wait_for_timeout(1500)
            found = [c for c in _controls(student) if re.search(r"delete|import|stFileUploader", c, re.I)]
            assert found == [], (path, found)
        for context in contexts:
            context.close()


# Elements that clip what they hold: wider inside than their box, and not drawing past it (overflow other than
# visible), inputs included. The interactive tables scroll inside themselves by design and are left out.
CLIPPED = """() => [...document.querySelectorAll('[data-testid="stMain"] *')]
  .filter(e => !(e instanceof SVGElement) && e.clientWidth > 1 && e.scrollWidth > e.clientWidth + 1
          && (getComputedStyle(e).overflowX !== 'visible' || e.tagName === 'INPUT')
          && !e.closest('[data-testid="stDataFrame"]'))
  .map(e => (e.getAttribute('data-testid') || e.tagName) + ' ' + e.scrollWidth + '>' + e.clientWidth + ': '
            + (e.textContent || e.value || '').slice(0, 60))"""


def test_nothing_is_clipped_at_a_projectors_1024_by_768(server, browser):
    """Home, Explore, Figure 2, Learn (with its serve command) and Results with the shipped bundle, at 1024×768."""
    base, store_dir = server
    _store_bundle(store_dir)
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    for path, ready in (("", "Each d against n/d^k"), ("Explore", "Explore one run"),
                        ("Figure_2?preset=cpu", "Figure 2 against n"), ("Learn", "HIERPOLY_MODE=classroom"),
                        ("Results", "stored results")):
        page.goto(f"{base}/{path}")
        page.get_by_text(ready).first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)  # the charts and tables take their final width
        assert page.evaluate(CLIPPED) == [], path
        _no_exception(page)
    page.close()




def test_the_gallery_shows_a_stored_run_in_every_learn_step_and_no_run_wording(browser, tmp_path):
    with _streamlit(tmp_path / "store", tmp_path / "streamlit.log", HIERPOLY_MODE="gallery",
                    HIERPOLY_LOAD_PRECOMPUTED="1") as base:
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(f"{base}/Learn")
        page.get_by_text(re.compile(r"found p \(correlation")).first.wait_for(timeout=180_000)  # step 3: the tour's run
        page.get_by_role("heading", name="Take it further").wait_for(timeout=30_000)
        body = page.locator("section.main, [data-testid='stMain']").first.inner_text()
        assert not re.search(r"\bRun\b|Train it|lock=1|classroom link", body), body
        page.goto(f"{base}/Explore?d=5&n=100")
        page.get_by_text("not in the gallery").first.wait_for(timeout=60_000)
        body = page.locator("[data-testid='stMain']").first.inner_text()
        assert not re.search(r"\bRun\b", body), body
        _no_exception(page)
        page.close()


LOSS_SE = re.compile(r"\d\.\d{3} ± \d\.\d{3}")


def test_learn_reuses_the_tour_runs_feature_and_explore_shows_the_same_comparison(server, browser):
    """Learn's last step fits a new link on the shipped tour run's frozen feature; Explore's panel shows the same runs."""
    from hierpoly.results import bundles
    from hierpoly.views import forms, tour

    base, store_dir = server
    bundles.import_bundle(Store(store_dir), (REPO / "cache" / "precomputed" / "tour.zip").read_bytes())
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/Learn")
    page.get_by_role("heading", name="5 · Reuse the learned feature").wait_for(timeout=120_000)
    page.get_by_role("button", name="▶ Fit the new link").click()
    table = page.locator('[data-testid="stTable"]').last
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(LOSS_SE.findall(table.inner_text())) < 3:  # reruns when they finish
        page.wait_for_timeout(500)
    assert len(LOSS_SE.findall(table.inner_text())) == 3, table.inner_text()
    page.get_by_text(re.compile(r"of this test loss comes from the")).first.wait_for(timeout=30_000)  # the tail
    _no_exception(page)

    page.goto(f"{base}/Explore" + forms.url_query(forms.params_from_config(tour.tour_config())))
    page.get_by_role("heading", name="Use this feature for a new target").wait_for(timeout=120_000)
    table = page.locator('[data-testid="stTable"]').last
    table.wait_for(timeout=30_000)
    assert len(LOSS_SE.findall(table.inner_text())) == 3, table.inner_text()  # the same three stored runs
    assert not page.get_by_role("button", name="▶ Fit the new link").count()  # nothing left to fit
    _no_exception(page)
    page.close()
