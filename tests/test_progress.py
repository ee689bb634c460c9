"""Progress of an immediate "Compute image quality" run in the App (issue 17, item 5): the
operator yields FiftyOne's ``set_progress`` messages with a count and the time left, then
the result dialog, through FiftyOne's own generator execution path."""

import asyncio
import threading
import time

import numpy as np
import pytest

import fiftyone.operators.executor as foe

from fiftyone_dnniqa.app.forms import STREAM_PARAM
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.app.progress import STARTING, ProgressFeed, eta_label, stream_progress

URI = f"{PLUGIN_NAME}/compute_quality"


@pytest.mark.parametrize("fraction, elapsed, expected", [
    (0.25, 10.0, "about 30 s left"),      # 10 s for a quarter: 30 s for the other three
    (0.5, 90.0, "about 1 min 30 s left"),
    (0.1, 900.0, "about 2 h 15 min left"),  # 900 s per tenth, nine tenths to go
    (1.0, 5.0, "done"),
])
def test_the_time_left_is_the_rate_so_far(fraction, elapsed, expected):
    assert eta_label("scored 1 of 4 images", fraction, elapsed) == f"scored 1 of 4 images; {expected}"


def test_no_time_left_before_anything_is_done():
    assert eta_label("scored 0 of 4 images", 0.0, 3.0) == "scored 0 of 4 images"


def test_the_feed_counts_from_its_first_report():
    now = [100.0]
    feed = ProgressFeed(clock=lambda: now[0])
    assert feed.latest() == (0, None)
    feed(0.0, "scored 0 of 8 images")  # start-up before the first report is not counted
    now[0] = 104.0
    feed(0.5, "scored 4 of 8 images")
    assert feed.latest() == (2, (0.5, "scored 4 of 8 images; about 4 s left"))


def test_stream_progress_yields_each_report_and_returns_the_result():
    step = threading.Event()

    def work(feed):
        for k in (1, 2):
            feed(k / 2, f"scored {k} of 2 images")
            step.wait(5)  # the caller sees each report before the next
            step.clear()
        return "the result"

    messages = []
    gen = stream_progress(work, lambda f, label: (f, label), poll_s=0.01)
    try:
        while True:
            messages.append(next(gen))
            if len(messages) > 1:
                step.set()
    except StopIteration as stop:
        result = stop.value
    assert result == "the result"
    assert messages[0] == (0.0, STARTING)
    assert [m[0] for m in messages[1:]] == [0.5, 1.0]
    assert messages[-1][1] == "scored 2 of 2 images; done"


def test_stream_progress_raises_what_the_work_raised():
    def work(feed):
        raise ValueError("field 'ground_truth' is a Classification label field")

    with pytest.raises(ValueError, match="label field"):
        list(stream_progress(work, lambda f, label: label, poll_s=0.01))


def test_the_operator_streams_its_progress_then_the_result(installed_plugin, make_dataset, imagenet_files,
                                                            monkeypatch):
    from fiftyone_dnniqa.app import operators as O

    real_plan = O.plan_quality

    def slow_plan(*args, **kwargs):  # building the metric takes 0.3 s more: the start-up shows it
        time.sleep(0.3)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(O, "plan_quality", slow_plan)
    ds = make_dataset(imagenet_files[:6])
    ds.persistent = True
    params = {"metric": "entropy", "field": "q", "batch_size": 2, "num_workers": 0, STREAM_PARAM: True}
    result = asyncio.run(foe.execute_or_delegate_operator(
        URI, {"dataset_name": ds.name, "params": params}, exhaust=False))
    assert result.is_generator
    calls = [(m.body.operator_uri, m.body.params) for m in result.result]
    progress = [p for uri, p in calls if uri == "set_progress"]
    assert progress[0] == {"label": STARTING, "progress": 0.0}
    assert progress[-1] == {"label": "scored 6 of 6 images; done", "progress": 1.0}
    assert all("images" in p["label"] for p in progress[1:])
    assert [uri for uri, _ in calls[-2:]] == ["reload_dataset", "show_output"]
    shown = calls[-1][1]
    assert shown["results"]["scored"] == 6 and shown["results"]["field"] == "q"
    assert set(shown["outputs"]["type"]["properties"]) == {"field", "scored", "startup_s", "images_per_s"}
    assert shown["results"]["startup_s"] >= 0.3  # building the metric, shown apart from the rate
    # the scores landed
    ds.reload()
    stored = np.asarray(ds.values("q"), dtype=float)
    assert np.isfinite(stored).all() and len(stored) == 6


def test_python_calls_still_return_the_result(installed_plugin, make_dataset, imagenet_files):
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    result = asyncio.run(foe.execute_or_delegate_operator(
        URI, {"dataset_name": ds.name, "params": {"metric": "entropy", "field": "q", "num_workers": 0}}))
    assert not result.is_generator and result.result["scored"] == 2


def test_the_apps_execute_hands_the_run_to_an_operation_that_streams(installed_plugin, make_dataset,
                                                                      imagenet_files):
    """The App's requests carry ``current_sample`` (Python's do not). Execute on the form only
    triggers the same operator with the same params and ``STREAM_PARAM``, and ends, so the
    form's dialog (and its "Executing..." bar) closes; the App then runs that request, as it
    runs every trigger with its own context, and gets the progress and the result."""
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    params = {"metric": "entropy", "field": "q", "num_workers": 0}
    request = {"dataset_name": ds.name, "current_sample": None, "operator_uri": URI, "params": params}
    result = asyncio.run(foe.execute_or_delegate_operator(URI, request, exhaust=False))
    assert result.is_generator
    (trigger,) = list(result.result)
    assert (trigger.body.operator_uri, trigger.body.params) == (URI, {**params, STREAM_PARAM: True})
    ds.reload()
    assert not ds.has_sample_field("q")  # nothing scored yet
    result = asyncio.run(foe.execute_or_delegate_operator(
        URI, {**request, "params": trigger.body.params}, exhaust=False))
    calls = [m.body.operator_uri for m in result.result]
    assert calls[0] == "set_progress" and calls[-1] == "show_output"
    ds.reload()
    assert ds.count("q") == 2
