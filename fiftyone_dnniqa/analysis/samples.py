"""One sample of a collection, by the id the App's sample viewer sends."""

from __future__ import annotations

from typing import Optional

from bson import ObjectId


def one_sample(samples, sample_id: Optional[str]):
    """The view of ``samples`` holding sample ``sample_id`` alone (empty when it is none of
    theirs); None when ``sample_id`` is missing or not a sample id (the App sends None, or
    whatever string a stale panel kept)."""
    if not sample_id or not ObjectId.is_valid(str(sample_id)):
        return None
    return samples.select(str(sample_id))
