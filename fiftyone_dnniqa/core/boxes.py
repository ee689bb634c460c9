"""Box geometry shared by the object engine and the object statistics (FiftyOne-free).

FiftyOne boxes are ``[x, y, w, h]`` relative to the image; a polyline is a list of shapes,
each a list of ``[x, y]`` points, and is scored and measured through its box.
"""

from __future__ import annotations

from typing import List, Optional


def polyline_box(points) -> Optional[List[float]]:
    """The ``[x, y, w, h]`` box around a polyline's shapes (lists of ``[x, y]``), or None."""
    xs = [p[0] for shape in (points or []) for p in shape if p is not None and len(p) >= 2]
    ys = [p[1] for shape in (points or []) for p in shape if p is not None and len(p) >= 2]
    if not xs:
        return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
