"""Find hard samples in a real browser (issue 28, items 7 and 11): with "Save as view" the
App switches to the saved view (its name in the view bar and the address, its samples in
the grid), and the result dialog says how many samples got which tag and the view's name.

The App server on loopback, the plugin installed, headless Chromium driven by Playwright
(fixtures from tests/test_browser.py); skips without Chromium or playwright.
"""

import re

import numpy as np

from test_browser import _app_page, _dismiss, _grid_count, _save, _wait_for, demo_dataset, \
    sync_playwright  # noqa: F401 (fixtures)


def _open_operator(page, label, query):
    """Opens ``label``'s form from the operator browser (the App lists operators once the
    plugins have loaded: try again until it does)."""
    item = page.get_by_text(label, exact=True)
    for _ in range(30):
        page.keyboard.press("`")
        page.keyboard.type(query)
        if _wait_for(lambda: item.count() > 0, timeout=2):
            break
        page.keyboard.press("Escape")
    item.first.click()


def _text_input(page, label):
    """The text box of the form field labelled ``label``."""
    return page.locator(f'xpath=//p[text()="{label}"]/ancestor::div[contains(@class,"MuiGrid-item")][1]//input').first


def test_find_hard_samples_switches_the_app_to_the_saved_view(sync_playwright, demo_dataset, app_server, tmp_path):
    url, log_path = app_server
    entropy = np.asarray(demo_dataset.values("iqa_entropy"))
    hardest = set(np.asarray(demo_dataset.values("id"))[np.argsort(entropy)[:3]])  # higher is better
    with _app_page(sync_playwright, tmp_path, log_path, "hard_view_failure.png") as (page, errors):
        page.goto(f"{url}/datasets/{demo_dataset.name}", wait_until="domcontentloaded")
        page.locator('[data-cy="new-panel-btn"]:visible').first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        _dismiss(page)
        assert _wait_for(lambda: _grid_count(page) == 16), _grid_count(page)
        _open_operator(page, "Find hard samples", "hard samples")
        page.get_by_text("Save as view (optional)").first.wait_for(timeout=60_000)
        page.get_by_text("Hardest k", exact=True).click()
        page.wait_for_timeout(1500)  # the form re-resolves: "Number of samples"
        _text_input(page, "Number of samples").fill("3")
        _text_input(page, "Tag them (optional)").fill("tough")
        _text_input(page, "Save as view (optional)").fill("tough three")
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Execute").click(timeout=30_000)
        # 11: the dialog says what was done, with its numbers (no "No value provided")
        page.get_by_text("Samples tagged 'tough'").wait_for(timeout=120_000)
        dialog = page.locator('[role="dialog"]').filter(has_text="Samples tagged 'tough'").first.inner_text()
        _save(page, tmp_path, "hard_view_result.png")
        assert "No value provided" not in dialog, dialog
        assert re.search(r"Hard samples:?\s*3", dialog) and re.search(r"tagged 'tough':?\s*3", dialog), dialog
        assert "tough three" in dialog, dialog
        page.get_by_role("button", name=re.compile("^(Close|Done)$")).first.click(timeout=20_000)
        # 7: the App shows the saved view, by its name, and only its samples
        assert _wait_for(lambda: "view=tough-three" in page.url, timeout=60), page.url
        assert _wait_for(lambda: _grid_count(page) == 3), _grid_count(page)
        assert page.get_by_text("tough three", exact=True).count() >= 1  # the view bar's saved-view name
        _save(page, tmp_path, "hard_view_shown.png")
    demo_dataset.reload()
    assert set(demo_dataset.load_saved_view("tough three").values("id")) == hardest
    assert set(demo_dataset.match_tags("tough").values("id")) == hardest
    assert not [e for e in errors if "entry is loading" not in e], errors
