"""The package's own MongoDB collections (field leases, shard state), beside FiftyOne's.

Every document carries the id of the dataset it belongs to (``dataset_id``), so that
:func:`prune_orphans` can remove those of datasets that no longer exist (FiftyOne's
``Dataset.delete()`` offers no hook; the stores prune whenever they are opened).
"""

from __future__ import annotations

import datetime

import fiftyone.core.odm as foo_odm

#: write leases on score fields (see :mod:`.locks`)
LOCKS = "dnniqa_field_locks"
#: per-shard progress of sharded runs (see :mod:`.shards`)
SHARDS = "dnniqa_shards"


def utc_now() -> datetime.datetime:
    """Now, in UTC, as MongoDB stores it (naive)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def collection(name: str):
    """One of this package's collections in FiftyOne's database."""
    return foo_odm.get_db_conn()[name]


def prune_orphans() -> int:
    """Removes the documents of datasets that no longer exist; returns how many."""
    live = {str(d["_id"]) for d in foo_odm.get_db_conn().datasets.find({}, {"_id": 1})}
    removed = 0
    for name in (LOCKS, SHARDS):
        coll = collection(name)
        dead = [d for d in coll.distinct("dataset_id") if d not in live]
        if dead:
            removed += coll.delete_many({"dataset_id": {"$in": dead}}).deleted_count
    return removed
