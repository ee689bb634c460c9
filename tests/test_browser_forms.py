"""The "Compute image quality" form in a real browser (issue 28 items 1 and 5): a misspelt
metric option is refused inline before anything runs, an error that only shows while the
metric is built ends the run in the App with its message, and two metrics run from the
form. The App server, the plugin and headless Chromium as in ``test_browser.py``."""

import re
import uuid

import pytest

import fiftyone as fo

import fiftyone_dnniqa as dq

from doc_pictures import doc_picture
from test_browser import _app_page, _open_operator, _save, _wait_for, sync_playwright  # noqa: F401

FORM = "Sample field for the scores (also the run key)"


@pytest.fixture
def photos(imagenet_files):
    """Four real photos; persistent so that the App server process sees them."""
    ds = fo.Dataset(f"dnniqa-forms-{uuid.uuid4().hex[:8]}", persistent=True)
    try:
        ds.add_samples([fo.Sample(filepath=f) for f in imagenet_files[:4]], progress=False)
        yield ds
    finally:
        ds.delete()


def _open_compute_form(page, url, name):
    """The dataset in the App, then the Compute form from the operator browser."""
    _open_operator(page, url, name, "Compute image quality", "Compute image quality").first.click(timeout=20_000)
    page.get_by_text("Metric options", exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)


def _labelled_input(page, label):
    """The text input of the form's field labelled ``label``."""
    return page.locator(f"xpath=//*[normalize-space(text())='{label}']/following::input[1]").first


def _execute(page):
    return page.get_by_role("button", name="Execute")


def test_a_misspelt_option_is_refused_inline_and_a_build_error_ends_the_run(
        sync_playwright, photos, app_server, tmp_path):
    url, log_path = app_server
    with _app_page(sync_playwright, tmp_path, log_path, "forms_option_failure.png") as (page, errors):
        _open_compute_form(page, url, photos.name)
        page.get_by_text(FORM).wait_for(timeout=60_000)
        options = _labelled_input(page, "Metric options")
        options.fill('{"tempreature": 2}')
        page.get_by_text(re.compile(r"has no option 'tempreature' \(did you mean 'temperature'\?\)")).first \
            .wait_for(timeout=60_000)
        assert _wait_for(lambda: _execute(page).is_disabled(), timeout=30)
        _save(page, tmp_path, "forms_misspelt_option.png")
        # a file that exists nowhere: the form cannot know, the run finds out while building
        options.fill("")
        _labelled_input(page, "Proxy weights").fill("/nowhere/my_classifier.pth")
        assert _wait_for(lambda: _execute(page).is_enabled(), timeout=30)
        _execute(page).click(timeout=30_000)
        page.get_by_text(re.compile(r"^weights file '/nowhere/my_classifier\.pth'.*no such file")).first \
            .wait_for(timeout=120_000)
        page.get_by_text("Quality scoring failed").first.wait_for(timeout=30_000)
        _save(page, tmp_path, "forms_build_error.png")
        assert page.get_by_text(re.compile(r"^Starting: building the metric")).count() == 0
        assert page.get_by_text("Images scored").count() == 0
        photos.reload()
        assert dq.list_quality_runs(photos) == []
        assert not [e for e in errors if "entry is loading" not in e], errors


def test_two_metrics_run_from_the_form(sync_playwright, photos, app_server, tmp_path):
    url, log_path = app_server
    with _app_page(sync_playwright, tmp_path, log_path, "forms_two_metrics_failure.png") as (page, errors):
        _open_compute_form(page, url, photos.name)
        metrics = _labelled_input(page, "Metrics")
        metrics.click(timeout=20_000)
        metrics.fill("entropy")
        page.get_by_role("option", name=re.compile(r"^entropy")).first.click(timeout=30_000)
        page.get_by_text("Scores go to the fields iqa_aligned, iqa_entropy").wait_for(timeout=60_000)
        page.get_by_text("Metric options", exact=True).first.click()  # closes the list of choices
        page.wait_for_timeout(1500)  # the App settles the params before Execute reads them
        page.get_by_text("Scores go to the fields iqa_aligned, iqa_entropy").wait_for(timeout=60_000)
        doc_picture(page, "compute-form")
        _save(page, tmp_path, "forms_two_metrics.png")
        _execute(page).click(timeout=30_000)
        page.get_by_text("Images scored").wait_for(timeout=300_000)
        _save(page, tmp_path, "forms_two_metrics_result.png")
        photos.reload()
        assert photos.count("iqa_aligned") == 4 and photos.count("iqa_entropy") == 4
        assert sorted(dq.list_quality_runs(photos)) == ["iqa_aligned", "iqa_entropy"]
        assert not [e for e in errors if "entry is loading" not in e], errors
