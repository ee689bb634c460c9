"""One writer per score field: a lease lock in FiftyOne's database.

Two runs writing the same field of the same dataset at once would race on
the run record and waste compute. :class:`FieldLock` takes an atomic lease
(a MongoDB document with a unique ``_id``) kept alive by a heartbeat thread.
A lease whose holder died (SIGKILL, machine lost) is taken over once its
heartbeat is older than ``lease_s``, or at once when the holder was a
process on this machine that no longer exists.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Optional

from pymongo.errors import DuplicateKeyError

from .store import LOCKS, collection, prune_orphans, utc_now


class FieldBusyError(RuntimeError):
    """Another live run is writing the field."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FieldLock:
    """Context manager holding the write lease on ``dataset.field``."""

    def __init__(self, dataset, field: str, lease_s: float = 60.0, heartbeat_s: float = 10.0):
        self.coll = collection(LOCKS)
        prune_orphans()  # FiftyOne's dataset.delete() has no hook: drop deleted datasets' leases here
        self.dataset_id = str(dataset._doc.id)
        self.key = f"{self.dataset_id}:{field}"
        self.field = field
        self.dataset_name = dataset.name
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.token = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _doc(self):
        return {"_id": self.key, "token": self.token, "host": socket.gethostname(),
                "pid": os.getpid(), "started_at": utc_now(), "heartbeat": utc_now(),
                "dataset": self.dataset_name, "dataset_id": self.dataset_id, "field": self.field}

    def _is_stale(self, held) -> bool:
        age = (utc_now() - held["heartbeat"]).total_seconds()
        if age > self.lease_s:
            return True
        return held.get("host") == socket.gethostname() and not _pid_alive(int(held.get("pid", 0)))

    def acquire(self):
        try:
            self.coll.insert_one(self._doc())
        except DuplicateKeyError:
            held = self.coll.find_one({"_id": self.key})
            if held is None:  # released meanwhile
                return self.acquire()
            if not self._is_stale(held):
                raise FieldBusyError(
                    f"Field '{self.field}' of dataset '{self.dataset_name}' is being written by "
                    f"another run (process {held.get('pid')} on {held.get('host')}, started "
                    f"{held.get('started_at'):%Y-%m-%d %H:%M:%S} UTC). Wait for it to finish, or "
                    "score into another field."
                ) from None
            # take over a dead holder's lease, unless someone else just did
            taken = self.coll.find_one_and_update(
                {"_id": self.key, "token": held["token"]}, {"$set": self._doc()})
            if taken is None:
                return self.acquire()
        self._thread = threading.Thread(target=self._beat, name=f"dnniqa-lock-{self.field}", daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.coll.update_one({"_id": self.key, "token": self.token},
                                     {"$set": {"heartbeat": utc_now()}})
            except Exception:  # a missed beat only shortens the lease
                pass

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.coll.delete_one({"_id": self.key, "token": self.token})

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
