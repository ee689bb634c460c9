"""Rows the "Quality vs Performance" panel's tables show: the dataset's quality runs, and
intervals and reasons kept on one line."""

from __future__ import annotations

from ..scoring import list_quality_run_statuses

NBSP = "\u00a0"


def run_rows(dataset) -> list:
    """The dataset's quality runs as the panel lists them: field, metric, status (and why
    a run failed)."""
    return [{"run": key, "metric": r["metric"] or "",
             "status": f"{r['status']}: {r['error']}" if r["error"] else r["status"]}
            for key, r in list_quality_run_statuses(dataset).items()]


def unwrapped(rows) -> list:
    """Table rows whose intervals ("0.738 [0.623, 0.887]") and reasons ("n/a (one
    class)") keep to one line in the App's tables: their spaces made non-breaking."""
    return [{k: v.replace(" ", NBSP) if isinstance(v, str) and ("[" in v or v.startswith("n/a")) else v
             for k, v in r.items()} for r in rows]
