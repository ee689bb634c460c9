"""The panel in a real browser: the FiftyOne App server on loopback, the plugin
installed into a plugins directory, headless Chromium driven by Playwright.

The test opens the panel the way a user does (the "+" new-panel menu of the Samples
space), checks that the plots and the ranking table render, clicks the tallest bar of
the histogram's "wrong" bars and checks that the App's view shrinks to that bin's wrong
predictions, then goes back with the panel's Back button. Screenshots go to the test's tmp dir and, when ``DNNIQA_ARTIFACTS`` is set, to that folder too.

Skips when Chromium (``/usr/bin/chromium``, or ``DNNIQA_CHROMIUM``) or the ``playwright``
package is missing; never downloads a browser.
"""

import contextlib
import os
import re
import shutil
import time
import uuid

import numpy as np
import pytest

import fiftyone as fo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app import panels as P

from doc_pictures import doc_picture

CHROMIUM = os.environ.get("DNNIQA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
PANEL_LABEL = "Quality vs Performance"
BENIGN_APP_ERRORS = {"entry is loading"}


@pytest.fixture
def sync_playwright():
    """Playwright's entry point; skips (before anything is built) without a browser."""
    if not os.path.isfile(CHROMIUM) or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)")
    return sync_playwright


def _label(path):
    return os.path.basename(path).split("_", 1)[1].rsplit(".", 1)[0]


@pytest.fixture
def demo_dataset(imagenet_files):
    """16 real photos, a quality run, predictions and a classification evaluation;
    persistent so that the App server process sees it."""
    ds = fo.Dataset(f"dnniqa-browser-{uuid.uuid4().hex[:8]}", persistent=True)
    try:
        files = imagenet_files[:16]
        ds.add_samples([fo.Sample(filepath=f, ground_truth=fo.Classification(label=_label(f)))
                        for f in files], progress=False)
        dq.compute_quality(ds, "entropy", num_workers=0)
        rng = np.random.default_rng(0)
        ds.set_values("predictions", [
            fo.Classification(label=g if rng.random() < 0.6 else "other", confidence=float(rng.random()))
            for g in ds.values("ground_truth.label")])
        ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
        yield ds
    finally:
        ds.delete()


def _save(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    dest = os.environ.get("DNNIQA_ARTIFACTS")
    if dest:
        os.makedirs(dest, exist_ok=True)
        shutil.copy(path, os.path.join(dest, name))
    return path


def _grid_count(page):
    """The App's sample count ("16 samples" above the grid)."""
    texts = page.get_by_text(re.compile(r"^\s*\d[\d,]* samples\s*$")).all_inner_texts()
    return int(texts[0].split()[0].replace(",", "")) if texts else None


@contextlib.contextmanager
def _app_page(sync_playwright, tmp_path, log_path, failure_png):
    """A headless Chromium page and the page errors it records; on a failure, a screenshot
    (``failure_png``) and the end of the App server's log."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        except Exception:
            try:
                _save(page, tmp_path, failure_png)
            finally:
                print(log_path.read_text()[-3000:])
            raise
        finally:
            browser.close()


def _dismiss(page):
    """Closes the App's "Explore Enterprise" popover, which covers the tab bar."""
    btn = page.get_by_role("button", name="Dismiss")
    if btn.count() and btn.first.is_visible():
        btn.first.click()


def _open_operator(page, url, dataset_name, search, label):
    """Opens the dataset in the App, then the operator browser (the ` key) with ``search``
    typed, until it lists ``label`` (the App lists operators once the plugins have
    loaded); returns the locator of ``label`` there."""
    page.goto(f"{url}/datasets/{dataset_name}", wait_until="domcontentloaded")
    page.locator('[data-cy="new-panel-btn"]:visible').first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _dismiss(page)
    item = page.get_by_text(label, exact=True)
    for _ in range(30):
        page.keyboard.press("`")
        page.keyboard.type(search)
        if _wait_for(lambda: item.count() > 0, timeout=2):
            break
        page.keyboard.press("Escape")
    return item


def _open_panel(page, url, dataset_name, label):
    """Opens the dataset in the App, then the panel ``label`` from the "+" new-panel menu."""
    page.goto(f"{url}/datasets/{dataset_name}", wait_until="domcontentloaded")
    new_panel = page.locator('[data-cy="new-panel-btn"]:visible').first
    new_panel.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _dismiss(page)
    new_panel.click(timeout=20_000)
    page.get_by_text(label, exact=True).first.click(timeout=20_000)


def test_panel_renders_and_clicks_set_the_view(sync_playwright, demo_dataset, app_server, tmp_path):
    url, log_path = app_server
    stats = P.panel_statistics(demo_dataset)
    h = stats["histogram"]
    t0 = time.perf_counter()
    with _app_page(sync_playwright, tmp_path, log_path, "quality_vs_performance_failure.png") as (page, errors):
        _open_panel(page, url, demo_dataset.name, PANEL_LABEL)
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= 3",
            timeout=60_000)
        page.wait_for_timeout(1000)
        _dismiss(page)
        opened = time.perf_counter() - t0
        shot = _save(page, tmp_path, "quality_vs_performance.png")

        assert page.locator('[data-cy="panel-tab-quality_vs_performance"]').count() == 1
        assert page.get_by_text(PANEL_LABEL, exact=True).count() >= 1
        content = page.locator('[data-cy="panel-content-quality_vs_performance"]')
        assert content.count() == 1
        for title in ("Accuracy by quantile bin of iqa_entropy",
                      "iqa_entropy for correct and wrong predictions",
                      "iqa_entropy vs prediction confidence"):
            assert content.locator("svg text", has_text=title).count() >= 1, title
        assert content.locator(".js-plotly-plot .scatterlayer .trace").count() >= 3
        assert content.get_by_text("Spearman rho [CI]").count() == 1
        assert content.get_by_text("iqa_entropy", exact=True).count() >= 1
        assert _grid_count(page) == 16

        _drill_into_the_tallest_wrong_bar_and_back(page, content, h, 16, tmp_path)
        doc_picture(page, "panel")
        # "entry is loading": the App's router (its bundled index-*.js) read before a page
        # entry finished loading; seen once in CI under load, unrelated to the panel
        assert not [e for e in errors if e not in BENIGN_APP_ERRORS], errors
    print(f"\npanel open with plots in {opened:.1f} s; screenshot {shot}")


def _drill_into_the_tallest_wrong_bar_and_back(page, content, h, n_view, tmp_path, check=None):
    """Clicks the histogram's tallest "wrong" bar: the grid shows that bin's wrong
    predictions (``check()`` runs then); the panel's Back button returns to the view."""
    bars = content.locator(".js-plotly-plot").nth(1).locator(".barlayer .trace").nth(1).locator(".point path")
    boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
    assert len(boxes) == len(h["wrong"])
    i = int(np.argmax(h["wrong"]))
    expected = h["wrong"][i]
    x, y = boxes[i]["x"] + boxes[i]["width"] / 2, boxes[i]["y"] + boxes[i]["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    assert _wait_for(lambda: _grid_count(page) == expected, 30), (_grid_count(page), expected)
    # the panel says what the grid shows, and keeps describing the view it came from
    content.get_by_text(re.compile(rf"^{expected} samples in the grid")).wait_for(timeout=30_000)
    _save(page, tmp_path, "quality_vs_performance_bin.png")
    if check:
        check()
    content.get_by_role("button", name="Back to the view before the drill-down").click(timeout=30_000)
    assert _wait_for(lambda: _grid_count(page) == n_view, 30)
    content.get_by_text(re.compile(rf"^{n_view} samples in the view")).wait_for(timeout=30_000)


def _add_detection_evaluation(ds, eval_key):
    """Boxes on the demo photos, found less often at low quality; a detection evaluation
    that computes the plugin's quality metrics (FiftyOne 1.22 keeps custom metrics of
    detection results when it reloads them, not of multiclass classification ones)."""
    q = np.asarray(ds.values("iqa_entropy"), float)
    rank = q.argsort().argsort() / (len(q) - 1)
    rng = np.random.default_rng(1)
    box = [0.2, 0.2, 0.5, 0.5]
    ds.set_values("boxes", [fo.Detections(detections=[fo.Detection(label="thing", bounding_box=box)])
                            for _ in q])
    ds.set_values("box_predictions", [fo.Detections(detections=[
        fo.Detection(label="thing", bounding_box=box if rng.random() < 0.2 + 0.7 * r else [0.7, 0.7, 0.2, 0.2],
                     confidence=float(rng.random()))]) for r in rank])
    ds.evaluate_detections("box_predictions", gt_field="boxes", eval_key=eval_key,
                           custom_metrics=dq.app.model_evaluation.quality_metrics("iqa_entropy", n_boot=100))
    return ds.load_evaluation_results(eval_key, cache=False).custom_metrics


def _open_evaluation(page, content, eval_key, tries=4):
    """Clicks the evaluation's card until its "Summary" shows: under CI load a click
    can land before the card reacts (seen once), and the panel then stays on its list."""
    summary = content.get_by_text("Summary", exact=True)
    for _ in range(tries):
        _dismiss(page)
        if not summary.count():
            content.get_by_text(eval_key, exact=True).first.click(timeout=60_000)
        if _wait_for(lambda: summary.count() and summary.first.is_visible(), 30):
            return
    raise AssertionError(f"the Model Evaluation panel never showed {eval_key!r}'s summary")


def test_model_evaluation_panel_shows_the_quality_scenario_and_metrics(
        sync_playwright, installed_plugin, demo_dataset, app_server, tmp_path):
    """FiftyOne's own Model Evaluation panel, opened from the "+" menu: the quality
    metrics sit beside FiftyOne's in its summary, and the quality scenario's subsets fill
    its Scenario Analysis tab."""
    url, log_path = app_server
    metrics = _add_detection_evaluation(demo_dataset, "det")
    assert len(metrics) == 3
    scenario = dq.add_quality_scenario(demo_dataset, "det", "iqa_entropy", bins=3)
    with _app_page(sync_playwright, tmp_path, log_path, "model_evaluation_failure.png") as (page, errors):
        _open_panel(page, url, demo_dataset.name, "Model Evaluation")
        content = page.locator('[data-cy="panel-content-model_evaluation_panel_builtin"]')
        _open_evaluation(page, content, "det")
        for m in metrics.values():  # listed by label, beside FiftyOne's own metrics
            content.get_by_text(m["label"], exact=True).wait_for(timeout=60_000)
        assert content.get_by_text("mAP", exact=True).count() >= 1
        _save(page, tmp_path, "model_evaluation_overview.png")
        content.get_by_text("Scenario Analysis", exact=True).click(timeout=20_000)
        content.get_by_text(scenario.name, exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        _save(page, tmp_path, "model_evaluation_scenario.png")
        for name in scenario.subset_names:
            assert content.get_by_text(name).count() + content.locator(
                "svg text", has_text=name).count() >= 1, name
        assert not [e for e in errors if e not in BENIGN_APP_ERRORS], errors


def _ranking(content):
    """The ranking table's rows as {field: n}."""
    table = content.locator("table").filter(has_text="Spearman rho [CI]").first
    table.wait_for(timeout=60_000)
    header = [c.strip() for c in table.locator("thead th").all_inner_texts()]
    rows = [[c.strip() for c in r.locator("td").all_inner_texts()] for r in table.locator("tbody tr").all()]
    try:
        return {r[header.index("Quality field")]: int(r[header.index("n")]) for r in rows}
    except (IndexError, ValueError):  # read while the App re-renders the table: read again
        return None


def _wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(0.25)


def test_walk_through_compute_rank_drill_down_and_back(sync_playwright, demo_dataset, app_server, tmp_path):
    """Issue 17's walk-through: find the operator by searching "quality" (Compute comes
    first), compute a field from its form and see its progress and result, open the panel,
    remove and re-add a field, drill down into a bar and back; at each step the table's
    rows and n and the grid's count describe what the App shows. Screenshots at each step."""
    url, log_path = app_server
    with _app_page(sync_playwright, tmp_path, log_path, "walk_through_failure.png") as (page, errors):
        # 1. the operator browser: "quality" lists Compute first; Enter opens its form
        compute = _open_operator(page, url, demo_dataset.name, "quality", "Compute image quality")
        listed = compute.first.locator("xpath=ancestor::*[contains(., 'Delete a quality run')][1]").inner_text()
        _save(page, tmp_path, "walk_1_operator_browser.png")
        ours = ["Compute image quality", "Find hard samples", "Show a quality run", "Delete a quality run"]
        at = [listed.find(label) for label in ours]
        assert min(at) >= 0 and at[0] == min(at), listed  # Enter runs the first: Compute, not Delete
        page.keyboard.press("Enter")
        page.get_by_text("Sample field for the scores (also the run key)").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the form opens on the recommended metric, aligned
        _save(page, tmp_path, "walk_2_form.png")
        page.get_by_role("button", name="Execute").click(timeout=30_000)
        # progress while it runs (start-up first, then counts), then the result
        page.get_by_text(re.compile(r"^(Starting: building the metric|scored \d+ of 16 images)")).first \
            .wait_for(timeout=60_000)
        # the form's dialog has closed: no hidden "Executing..." bar animates under the progress
        assert _wait_for(lambda: page.locator(".MuiLinearProgress-indeterminate").count() == 0, timeout=1.0)
        _save(page, tmp_path, "walk_3_progress.png")
        page.get_by_text("Images scored").wait_for(timeout=240_000)
        _save(page, tmp_path, "walk_3_result.png")
        demo_dataset.reload()
        assert demo_dataset.count("iqa_aligned") == 16
        page.get_by_role("button", name="Done").click(timeout=20_000)
        # 2. the panel ranks both fields over the 16 samples
        new_panel = page.locator('[data-cy="new-panel-btn"]:visible').first
        new_panel.click(timeout=20_000)
        page.get_by_text(PANEL_LABEL, exact=True).first.click(timeout=20_000)
        content = page.locator('[data-cy="panel-content-quality_vs_performance"]')
        assert _wait_for(lambda: _ranking(content) == {"iqa_entropy": 16, "iqa_aligned": 16}), _ranking(content)
        _save(page, tmp_path, "walk_4_panel.png")
        # 3. remove a field chip: one row left, still over the 16 samples
        chip = content.locator(".MuiChip-root", has_text="iqa_aligned").first
        chip.locator(".MuiChip-deleteIcon").click(timeout=20_000)
        assert _wait_for(lambda: _ranking(content) == {"iqa_entropy": 16}), _ranking(content)
        _save(page, tmp_path, "walk_5_one_field.png")
        # 4. add it back by typing its name
        content.get_by_placeholder("Type and press enter to add a value").first.fill("iqa_aligned")
        page.keyboard.press("Enter")
        both = {"iqa_entropy": 16, "iqa_aligned": 16}
        assert _wait_for(lambda: _ranking(content) == both), _ranking(content)
        # 5. drill into a bar: the grid shrinks, the ranking still describes the 16 samples
        title = content.locator("svg text", has_text="for correct and wrong predictions").first.text_content()
        plotted = title.split(" for correct")[0].strip()
        stats = P.panel_statistics(demo_dataset, ["iqa_entropy", "iqa_aligned"], "eval", "correct")

        def context_kept():
            _save(page, tmp_path, "walk_6_drill_down.png")
            assert _ranking(content) == both

        _drill_into_the_tallest_wrong_bar_and_back(
            page, content, stats["per_field"][plotted]["histogram"], 16, tmp_path, check=context_kept)
        _save(page, tmp_path, "walk_7_back.png")
        assert not [e for e in errors if e not in BENIGN_APP_ERRORS], errors


def test_the_panel_in_object_mode(sync_playwright, demo_dataset, app_server, tmp_path):
    """Issue 14: the panel switches to objects; its tables and the recall-by-quality bars
    render for a real object run on a real detection evaluation."""
    url, log_path = app_server
    _add_detection_evaluation(demo_dataset, "det")
    dq.compute_quality(demo_dataset, "entropy", patches_field="boxes", num_workers=0)
    with _app_page(sync_playwright, tmp_path, log_path, "object_mode_failure.png") as (page, errors):
        _open_panel(page, url, demo_dataset.name, PANEL_LABEL)
        content = page.locator('[data-cy="panel-content-quality_vs_performance"]')
        content.get_by_text("Objects", exact=True).first.click(timeout=60_000)
        content.get_by_text("Does quality tell missed objects, beyond their size?").wait_for(timeout=60_000)
        page.wait_for_function(
            "document.querySelectorAll('[data-cy=\"panel-content-quality_vs_performance\"] .js-plotly-plot').length >= 1",
            timeout=60_000)
        # the size row and the bars' title render after the heading (seen late under load)
        content.get_by_text("box area", exact=True).first.wait_for(timeout=60_000)
        content.locator("svg text", has_text="Recall by quality bin of iqa_entropy").first.wait_for(timeout=60_000)
        _save(page, tmp_path, "quality_vs_performance_objects.png")
        doc_picture(page, "object-mode")
        assert not [e for e in errors if e not in BENIGN_APP_ERRORS], errors


def _filter_in_the_sidebar(page, field, value):
    """Filters ``field``'s labels to ``value`` as a user does: expands the field in the
    sidebar, types the value in its "+ filter by label" box and presses Enter."""
    _dismiss(page)
    page.locator(f'[data-cy="sidebar-field-arrow-enabled-{field}"]').first.click(timeout=60_000)
    box = page.locator(f'[data-cy="categorical-filter-{field}.label"]')
    search = box.locator(f'[data-cy="selector-sidebar-search-{field}.label"]')
    search.click(timeout=60_000)
    search.fill(value)
    page.wait_for_timeout(1500)  # the App looks the value up before Enter can pick it
    page.keyboard.press("Enter")


def test_a_sidebar_filter_stays_with_the_panel_open(sync_playwright, demo_dataset, app_server, tmp_path):
    """Issue 28, item 2: with the panel open, a sidebar filter (scene = volcano, 8 of the 16
    photos) stayed about a second, then the App reset its view to all 16: each panel-state
    write (the panel's, or the App's form copying a plot's new data into the state) changed
    the App's workspace, which reloaded the page, dropped the filter and fired the panel's
    on_change_view again. Now the grid keeps the 8 samples for 20 s and more, the panel's
    count is the filtered view's, and once it has answered the App writes no workspace and
    fires no view event: no loop."""
    url, log_path = app_server
    demo_dataset.set_values("scene", [fo.Classification(label="volcano" if i % 2 else "beach")
                                      for i in range(len(demo_dataset))])
    n = demo_dataset.count_values("scene.label")["volcano"]
    assert 0 < n < len(demo_dataset)
    with _app_page(sync_playwright, tmp_path, log_path, "sidebar_filter_failure.png") as (page, errors):
        writes = []  # the App's workspace writes and the panel's view events
        page.on("request", lambda r: writes.append(r.post_data) if r.method == "POST" and (
            "setSpaces" in (r.post_data or "") or "on_change_view" in (r.post_data or "")) else None)
        _open_panel(page, url, demo_dataset.name, PANEL_LABEL)
        content = page.locator('[data-cy="panel-content-quality_vs_performance"]')
        content.get_by_text(re.compile(r"^16 samples in the view")).wait_for(timeout=120_000)
        _filter_in_the_sidebar(page, "scene", "volcano")
        content.get_by_text(re.compile(rf"^{n} samples in the view, {n} with a target")).wait_for(timeout=120_000)
        page.wait_for_timeout(3000)  # the App's requests answering the filter
        del writes[:]
        # the App used to reset the view within seconds of each panel answer: read the grid
        # and the panel again and again for 20 s
        seen, start = [], time.monotonic()
        while time.monotonic() - start < 20:
            seen.append((_grid_count(page), content.get_by_text(re.compile(rf"^{n} samples in the view")).count()))
            page.wait_for_timeout(500)
        _save(page, tmp_path, "sidebar_filter.png")
        assert len(seen) >= 5 and seen == [(n, 1)] * len(seen), seen
        assert writes == [], writes
        assert not [e for e in errors if e not in BENIGN_APP_ERRORS], errors
