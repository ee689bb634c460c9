"""Progress of an immediate operation in the App.

FiftyOne draws an immediate operation's progress only from the messages an operator
*yields* (``ctx.ops.set_progress``); ``ctx.set_progress`` reaches the App for delegated
operations only. :func:`stream_progress` runs the work in a thread and yields its latest
progress, with a count and the time left, until the work ends.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

__all__ = ["ProgressFeed", "eta_label", "stream_progress"]

#: how often the App is told, at most (seconds)
POLL_S = 0.5
#: what the App shows before the first batch: building the metric and starting the loader
STARTING = "Starting: building the metric and the image loader"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def eta_label(label: str, fraction: float, elapsed_s: float) -> str:
    """``label`` with the time left at the rate so far (``elapsed_s`` counts from the first
    progress report, so start-up does not inflate it)."""
    if fraction >= 1:
        return f"{label}; done"
    if fraction <= 0 or elapsed_s <= 0:
        return label
    return f"{label}; about {_duration(elapsed_s * (1 - fraction) / fraction)} left"


class ProgressFeed:
    """The latest ``(fraction, label)`` a worker reported, read from another thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._first: Optional[float] = None
        self._latest: Optional[tuple] = None
        self._version = 0

    def __call__(self, fraction: float, label: str) -> None:
        with self._lock:
            now = self._clock()
            if self._first is None:
                self._first = now
            self._latest = (float(fraction), eta_label(label, fraction, now - self._first))
            self._version += 1

    def latest(self):
        """``(version, (fraction, label) or None)``: the version grows with each report."""
        with self._lock:
            return self._version, self._latest


def stream_progress(work: Callable[[ProgressFeed], object], make_message: Callable[[float, str], object],
                    poll_s: float = POLL_S):
    """Runs ``work(feed)`` in a thread; yields ``make_message(fraction, label)`` for the
    start and for each new report, and returns (``yield from``) what ``work`` returned,
    or raises what it raised."""
    feed = ProgressFeed()
    outcome = {}

    def target():
        try:
            outcome["value"] = work(feed)
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, name="dnniqa-progress", daemon=True)
    thread.start()
    yield make_message(0.0, STARTING)
    seen = 0
    while True:
        thread.join(poll_s)
        version, latest = feed.latest()
        if version != seen and latest is not None:
            seen = version
            yield make_message(*latest)
        if not thread.is_alive():
            break
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
