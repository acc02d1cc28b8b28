"""The store's secrets and counters: one-time challenge passwords (kept as digests), failed
attempts for the rate limit, and the KEM proof-of-possession challenges of transactions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, not_, select, update
from sqlalchemy.exc import IntegrityError

from .base import StoreBase
from .errors import DuplicateChallenge
from .models import Challenge, Failure, KemChallenge
from .records import ChallengeRecord, KemChallengeRecord, KemOutcome, challenge_record
from .sql import _is_unique_violation, _rowcount, _table, _upsert, _utc


class ChallengeStore(StoreBase):

    def add_challenge(
        self,
        profile: str,
        digest: bytes,
        expires_at: datetime,
        now: datetime,
        note: str | None = None,
    ) -> int:
        """Register a one-time challenge password by its SHA-256 `digest`; returns its id."""
        row = Challenge(
            profile=profile,
            digest=digest,
            expires_at=_utc(expires_at),
            created_at=_utc(now),
            note=note,
        )
        try:
            with self._writing() as s:
                s.add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc, _table(Challenge), "uq_challenges_profile_digest"):
                raise DuplicateChallenge(f"challenge already registered in {profile!r}") from None
            raise
        return row.id

    def consume_challenge(self, profile: str, digest: bytes, now: datetime) -> bool:
        """Use up a live challenge. True for exactly one caller, however many race."""
        now = _utc(now)
        stmt = (
            update(Challenge)
            .where(
                Challenge.profile == profile,
                Challenge.digest == digest,
                Challenge.used_at.is_(None),
                Challenge.expires_at > now,
            )
            .values(used_at=now)
        )
        with self._writing() as s:
            return _rowcount(s, stmt) == 1

    def challenge_is_live(self, profile: str, digest: bytes, now: datetime) -> bool:
        """Whether a one-time challenge with this digest is registered, unused and unexpired
        (a read: `settle_transaction(spend_challenge=...)` spends it with the outcome)."""
        q = select(Challenge.id).where(
            Challenge.profile == profile,
            Challenge.digest == digest,
            Challenge.used_at.is_(None),
            Challenge.expires_at > _utc(now),
        )
        with self._reading() as s:
            return s.execute(q).first() is not None

    def list_challenges(self, profile: str, include_used: bool = False) -> list[ChallengeRecord]:
        """Challenges of `profile`, oldest first; unused ones (expired or not) unless include_used."""
        q = select(Challenge).where(Challenge.profile == profile)
        if not include_used:
            q = q.where(Challenge.used_at.is_(None))
        q = q.order_by(Challenge.created_at, Challenge.id)
        with self._reading() as s:
            return [challenge_record(r) for r in s.scalars(q)]

    def purge_expired_challenges(self, now: datetime) -> int:
        """Delete expired challenges (used or not) of every profile; returns how many."""
        stmt = delete(Challenge).where(Challenge.expires_at <= _utc(now))
        with self._writing() as s:
            return _rowcount(s, stmt)

    # -------------------------------------------------------------- rate limiting

    def record_failure(self, key: str, now: datetime) -> None:
        """Note one failed attempt under `key` (e.g. a client address or a subject)."""
        with self._writing() as s:
            s.add(Failure(key=key, at=_utc(now)))

    def count_failures(self, key: str, since: datetime) -> int:
        """Failed attempts under `key` at or after `since`."""
        row = self._hot.first(self._count_failures, {"key": key, "since": _utc(since)})
        return int(row[0])  # type: ignore[index]

    def prune_failures(self, before: datetime) -> int:
        """Forget failures older than `before`; returns how many."""
        with self._writing() as s:
            stmt = delete(Failure).where(Failure.at < _utc(before))
            return _rowcount(s, stmt)

    def prune_kem_challenges(self, expired_before: datetime) -> int:
        """Delete KEM challenges (spent or not) that expired before `expired_before`; returns how
        many. A spent challenge expires too, so every row goes once its time is over."""
        with self._writing() as s:
            return _rowcount(s, delete(KemChallenge).where(KemChallenge.expires_at < _utc(expired_before)))

    # -------------------------------------------------------------- KEM proof of possession

    def put_kem_challenge(
        self,
        profile: str,
        transaction_id: str,
        secret: bytes,
        csr_digest: bytes,
        signer_key_fingerprint: bytes,
        expires_at: datetime,
        now: datetime,
        *,
        challenge: bytes | None = None,
        key_fingerprint: bytes | None = None,
    ) -> KemChallengeRecord:
        """Make `challenge` (with its `secret`) the KEM challenge of an existing transaction
        (named by its CSR key `key_fingerprint`; by default the signer's), unless a live one
        is already there; returns the one that stands, which is what the device must be sent.

        A live challenge (unspent, unexpired, its value kept) is never replaced: a repeated
        request gets the same challenge (RFC 8894 section 3.3.1), so a replayed PKCSReq cannot
        cancel the one the device is answering. A spent or expired one is replaced, which
        makes its secret worthless. One statement, so concurrent callers agree on the winner.
        """
        key_fingerprint = signer_key_fingerprint if key_fingerprint is None else key_fingerprint
        now = _utc(now)
        values = {
            "secret": secret,
            "csr_digest": csr_digest,
            "signer_key_fingerprint": signer_key_fingerprint,
            "challenge": challenge,
            "expires_at": _utc(expires_at),
            "created_at": now,
            "spent_at": None,
        }
        where = (KemChallenge.profile == profile, KemChallenge.transaction_id == transaction_id,
                 KemChallenge.key_fingerprint == key_fingerprint)
        with self._writing() as s:
            stmt = _upsert(s, KemChallenge).values(
                profile=profile, transaction_id=transaction_id, key_fingerprint=key_fingerprint, **values
            )
            live = and_(KemChallenge.spent_at.is_(None), KemChallenge.expires_at > now,
                        KemChallenge.challenge.is_not(None))
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["profile", "transaction_id", "key_fingerprint"], set_=values, where=not_(live)
                )
            )
            row = s.scalars(select(KemChallenge).where(*where)).one()
            return _kem_record(row, "ok")

    def take_kem_challenge(
        self, profile: str, transaction_id: str, now: datetime, key_fingerprint: bytes | None = None
    ) -> KemChallengeRecord | None:
        """Spend the KEM challenge of a transaction (named by its CSR key; without one, the
        only challenge under the ID); None if there is none.

        The record's `outcome` is "ok" only for the one caller that found it live and
        spent it; otherwise it says why not ("expired" or "spent").
        """
        now = _utc(now)
        where = [KemChallenge.profile == profile, KemChallenge.transaction_id == transaction_id]
        if key_fingerprint is not None:
            where.append(KemChallenge.key_fingerprint == key_fingerprint)
        with self._writing() as s:
            taken = (
                _rowcount(
                    s,
                    update(KemChallenge)
                    .where(*where, KemChallenge.spent_at.is_(None), KemChallenge.expires_at > now)
                    .values(spent_at=now),
                )
                == 1
            )
            row = s.scalars(select(KemChallenge).where(*where)).one_or_none()
            if row is None:
                return None
            outcome: KemOutcome = (
                "ok" if taken else "spent" if row.spent_at is not None else "expired"
            )
            return _kem_record(row, outcome)


def _kem_record(row: KemChallenge, outcome: KemOutcome) -> KemChallengeRecord:
    return KemChallengeRecord(
        profile=row.profile,
        transaction_id=row.transaction_id,
        key_fingerprint=row.key_fingerprint,
        secret=row.secret,
        csr_digest=row.csr_digest,
        signer_key_fingerprint=row.signer_key_fingerprint,
        challenge=row.challenge,
        expires_at=row.expires_at,
        created_at=row.created_at,
        spent_at=row.spent_at,
        outcome=outcome,
    )
