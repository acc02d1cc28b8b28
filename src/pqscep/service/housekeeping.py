"""Housekeeping: what the store keeps only for a while is deleted once its time is over.

- failed attempts older than the longest rate-limit window of any profile (the rate limit
  counts only those within its window, so older rows change no answer);
- one-time challenges past their expiry, used or not (a used one stays listed by
  `admin challenge list --include-used` until then);
- KEM proof-of-possession challenges a day after their expiry, spent or not (their secrets are
  worthless by then; for that day a late proof still gets "expired" rather than "no challenge").

The server runs `prune` on a timer in every worker process (`Housekeeper`); the deletes are
idempotent, so several workers or servers pruning at once is harmless. Operators who prefer cron
run `pqscep admin prune`.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ..ca.profile import ProfileSettings

log = logging.getLogger("pqscep.housekeeping")

__all__ = ["KEM_CHALLENGE_GRACE", "Housekeeper", "Pruned", "prune"]

KEM_CHALLENGE_GRACE = datetime.timedelta(days=1)
_MIN_FAILURE_KEEP = datetime.timedelta(minutes=15)  # the default window, if no profile has one


class PrunableStore(Protocol):
    def prune_failures(self, before: datetime.datetime) -> int: ...
    def purge_expired_challenges(self, now: datetime.datetime) -> int: ...
    def prune_kem_challenges(self, expired_before: datetime.datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class Pruned:
    failures: int
    challenges: int
    kem_challenges: int


def prune(store: PrunableStore, profiles: Iterable[ProfileSettings], now: datetime.datetime) -> Pruned:
    """Delete what has outlived its use (module docstring) and say how many rows went."""
    keep = max((p.rate_limit.window for p in profiles), default=_MIN_FAILURE_KEEP)
    return Pruned(
        failures=store.prune_failures(now - max(keep, datetime.timedelta(0))),
        challenges=store.purge_expired_challenges(now),
        kem_challenges=store.prune_kem_challenges(now - KEM_CHALLENGE_GRACE),
    )


class Housekeeper:
    """A daemon thread that runs `prune` every `interval` seconds, first right after start. A
    failed run (the database out of reach) is logged and tried again at the next tick."""

    def __init__(self, store: PrunableStore, profiles: Iterable[ProfileSettings], interval: float,
                 clock: Callable[[], datetime.datetime]) -> None:
        self._store, self._profiles, self._interval, self._clock = store, list(profiles), interval, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pqscep-housekeeping", daemon=True)

    def start(self) -> Housekeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pruned = prune(self._store, self._profiles, self._clock())
                if pruned.failures or pruned.challenges or pruned.kem_challenges:
                    log.info("pruned %d failed attempts, %d one-time challenges, %d KEM challenges",
                             pruned.failures, pruned.challenges, pruned.kem_challenges)
            except Exception as exc:  # the next tick tries again; the server keeps serving
                log.warning("housekeeping failed: %s", type(exc).__name__)
            self._stop.wait(self._interval)
