"""The life of a SCEP transaction: its states, the one table of transitions between them, and
the decision of what happens to each request, as a pure function (no I/O, no clock of its own).

A transaction is what RFC 8894 section 3.2.1.1 names by its transactionID: one enrollment (a
PKCSReq or RenewalReq) and the CertPolls that follow it until it ends. The service reads the
stored transaction, calls `decide` with what the request says, and carries out the `Action`
it returns; the store checks every state change it writes against `TRANSITIONS`, and so do
the operator's commands (approve, reject). Like h11's connection states, every state and
every transition is here and nowhere else; tests/test_transactions.py drives each of them.

    (new) --policy holds--------> AWAITING_APPROVAL --operator approves--> APPROVED
      |                                  |                                    |
      +--ML-KEM key, challenge mode--> AWAITING_KEM_PROOF <--challenge sent---+
      |                                  |      ^  (live one or a fresh one)  |
      +--policy passes---------------> ISSUED <-+--proof verified-------------+ (no proof owed)
                                                |
    the operator rejects AWAITING_APPROVAL, APPROVED or AWAITING_KEM_PROOF: REJECTED.
    A new request (another CSR) under the ID of an ISSUED or REJECTED transaction, signed by
    the same key, starts over: clients that derive the transactionID from the key (micromdm,
    strongSwan) reuse it when they renew with the same key.

A transaction is named by its profile, its transactionID and the key of its CSR: a request
under a known ID for another key is another transaction, judged on its own (the store finds
`record` by the CSR's key; a CertPoll, which has no CSR, by its signer), so a device whose ID
is derived from its key cannot be locked out by someone who enrolls first under that ID.

A refused request leaves no transaction behind (RFC 8894 section 3.3.1 lets the device fix it
and retry under the same transactionID), so there is no "failed" state. A repeated request
gets the answer of the state its transaction is in (RFC 8894 section 3.3.1), without the
policy being asked again.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..protocol.messages import FailInfo

__all__ = [
    "Action",
    "ActionKind",
    "Attempt",
    "Event",
    "KemChallengeView",
    "PolicyVerdict",
    "StoredTransaction",
    "TRANSITIONS",
    "TransitionError",
    "TxState",
    "Write",
    "check_write",
    "decide",
    "sources_of",
    "target_of",
]


class TxState(enum.StrEnum):
    """Where a transaction stands. The values are what the database stores (its CHECK
    constraint is built from them, storage/models.py)."""

    AWAITING_APPROVAL = "awaiting_approval"  # CertRep PENDING until an operator decides
    APPROVED = "approved"  # the operator said yes; issued (or challenged) at the next request
    AWAITING_KEM_PROOF = "awaiting_kem_proof"  # PENDING with a kemPopChallenge out (draft section 7.2)
    ISSUED = "issued"
    REJECTED = "rejected"  # by the operator; the device gets FAILURE badRequest with the reason


class Event(enum.Enum):
    """What moves a transaction from one state to another."""

    HOLD = "the policy holds the request for an operator"
    CHALLENGE = "a KEM proof-of-possession challenge is sent"
    ISSUE = "the certificate is issued"
    APPROVE = "the operator approves"
    REJECT = "the operator rejects"


# The whole state machine: TRANSITIONS[state][event] is the next state. The key None is a
# transaction not stored yet. Anything not listed is refused.
_START = {Event.HOLD: TxState.AWAITING_APPROVAL, Event.CHALLENGE: TxState.AWAITING_KEM_PROOF,
          Event.ISSUE: TxState.ISSUED}
TRANSITIONS: Mapping[TxState | None, Mapping[Event, TxState]] = {
    None: _START,
    TxState.AWAITING_APPROVAL: {Event.APPROVE: TxState.APPROVED, Event.REJECT: TxState.REJECTED},
    TxState.APPROVED: {Event.CHALLENGE: TxState.AWAITING_KEM_PROOF, Event.ISSUE: TxState.ISSUED,
                       Event.REJECT: TxState.REJECTED},
    TxState.AWAITING_KEM_PROOF: {Event.CHALLENGE: TxState.AWAITING_KEM_PROOF, Event.ISSUE: TxState.ISSUED,
                                 Event.REJECT: TxState.REJECTED},
    # Finished: a new request under the same ID and key starts again.
    TxState.ISSUED: _START,
    TxState.REJECTED: _START,
}
FINISHED = frozenset({TxState.ISSUED, TxState.REJECTED})


class TransitionError(ValueError):
    """A state change the table does not allow."""


def target_of(state: TxState | None, event: Event) -> TxState:
    """The state `event` moves a transaction in `state` to; TransitionError if it may not."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        where = "a new transaction" if state is None else f"a transaction in state {state.value}"
        raise TransitionError(f"{event.value}: not possible for {where}") from None


def sources_of(event: Event) -> frozenset[TxState]:
    """The stored states from which `event` is possible (what an operator's command may act on)."""
    return frozenset(state for state, moves in TRANSITIONS.items() if state is not None and event in moves)


def check_write(expect: TxState | None, new: TxState) -> None:
    """TransitionError unless some event moves a transaction from `expect` to `new`."""
    if new not in TRANSITIONS.get(expect, {}).values():
        raise TransitionError(f"no transition from {expect or 'a new transaction'} to {new}")


# ------------------------------------------------------------------------- the inputs


class StoredTransaction(Protocol):
    """What `decide` reads of a stored transaction (storage.TransactionRecord has it)."""

    @property
    def state(self) -> TxState: ...
    @property
    def signer_key_fingerprint(self) -> bytes: ...
    @property
    def csr_der(self) -> bytes | None: ...
    @property
    def fail_text(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """What `decide` needs of a request: who signed it and what it asks for."""

    signer_key_fingerprint: bytes
    # The CSR of a PKCSReq or RenewalReq; None for a CertPoll (it continues the stored one).
    csr_der: bytes | None
    # The certificate is for an ML-KEM key at a profile whose proof of possession is the
    # challenge (draft section 7.2): the request waits in AWAITING_KEM_PROOF first.
    kem_challenge_mode: bool
    # The request carries a kemPopProof attribute.
    has_kem_proof: bool = False

    @property
    def is_poll(self) -> bool:
        return self.csr_der is None


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """The policy chain's word on a request (ca.policy turns its checks into one of these)."""

    hold: bool = False  # wait for an operator
    refused: bool = False
    fail_info: FailInfo = FailInfo.BAD_REQUEST
    text: str = ""
    failed_attempt: bool = False  # counts against the rate limit
    # SHA-256 of a one-time challenge the request used: spent in the same database
    # transaction as the outcome it leads to (issued or pending), never before.
    spend_challenge: bytes | None = None

    @classmethod
    def passed(cls) -> PolicyVerdict:
        return cls()


@dataclass(frozen=True, slots=True)
class KemChallengeView:
    """The KEM challenge the store spent for a kemPopProof (None when there is none), and
    what the service found when it checked the proof against it."""

    expires_at: datetime
    spent_before: bool  # another proof already spent it
    signer_key_fingerprint: bytes
    csr_digest: bytes
    # What checking the MAC said: None when it verified, else (failInfo, one-line reason).
    mac_error: tuple[FailInfo, str] | None
    # SHA-256 of the CSR the proof is for (the stored one).
    request_csr_digest: bytes
    request_signer_fingerprint: bytes


# ------------------------------------------------------------------------- the output


class ActionKind(enum.Enum):
    REFUSE = "refuse"  # CertRep FAILURE; nothing written
    EVALUATE_POLICY = "evaluate the policy"  # run the chain, then decide again with its verdict
    CHECK_KEM_PROOF = "check the KEM proof"  # spend the challenge, check it, decide again
    REPLAY_CERTIFICATE = "replay the certificate"  # SUCCESS with the stored certificate
    PENDING = "pending"  # CertRep PENDING (written when `write` is set)
    # PENDING with the live kemPopChallenge, else a fresh one (the store keeps a live one: one
    # conditional write, so concurrent requests agree on it).
    SEND_KEM_CHALLENGE = "send a KEM challenge"
    ISSUE = "issue"  # sign the certificate and write it with the transaction


@dataclass(frozen=True, slots=True)
class Write:
    """The one conditional write of the transaction row: `expect` is the state it must be in
    now (None: the row must not exist yet), `new` the state written."""

    expect: TxState | None
    new: TxState
    spend_challenge: bytes | None = None  # the one-time challenge spent with this write


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    write: Write | None = None
    fail_info: FailInfo = FailInfo.BAD_REQUEST
    text: str = ""
    failed_attempt: bool = False


def _refuse(text: str, fail_info: FailInfo = FailInfo.BAD_REQUEST, *, failed_attempt: bool = False) -> Action:
    return Action(ActionKind.REFUSE, fail_info=fail_info, text=text, failed_attempt=failed_attempt)


def _move(kind: ActionKind, state: TxState | None, event: Event) -> Action:
    new = target_of(state, event)
    if state == new == TxState.AWAITING_KEM_PROOF:
        # A transaction already waiting for its proof: the row stays as it is (the live
        # challenge beside it is sent again; a spent or expired one is replaced).
        return Action(kind)
    return Action(kind, Write(state, new))


# ------------------------------------------------------------------------- the decision


def decide(
    record: StoredTransaction | None,
    attempt: Attempt,
    *,
    verdict: PolicyVerdict | None = None,
    kem_challenge: KemChallengeView | None = None,
    proof_checked: bool = False,
    now: datetime,
) -> Action:
    """What to do with `attempt`, given its stored transaction `record` (None: none yet).

    Two kinds of action ask for more input and a second call: EVALUATE_POLICY (pass the
    chain's `verdict`) and CHECK_KEM_PROOF (spend the challenge and pass it as
    `kem_challenge`, None if there was none, with `proof_checked=True`). The caller runs the
    policy only when asked: its checks have effects (a one-time challenge is spent, a webhook
    is called) that a repeated request must not have again.
    """
    if attempt.is_poll:
        return _decide_poll(record, attempt, kem_challenge, proof_checked, now)
    if record is None:
        return _after_policy(None, attempt, verdict)
    if not hmac.compare_digest(record.signer_key_fingerprint, attempt.signer_key_fingerprint):
        # The same ID and CSR key, re-signed by someone else (the CSR is no secret): it may
        # neither continue nor take over the transaction of the key's holder.
        return _refuse("this transaction was requested with another signer key")
    if record.csr_der == attempt.csr_der:  # a retransmission: the stored state answers
        return _resume(record, attempt, kem_challenge, proof_checked, now)
    if record.state not in FINISHED:
        return _refuse("transactionID already in use for another request in progress")
    return _after_policy(record.state, attempt, verdict)


def _decide_poll(record, attempt, kem_challenge, proof_checked, now) -> Action:
    """CertPoll (RFC 8894 section 3.3.3): answered from the stored transaction alone."""
    if record is None:
        return _refuse("no such transaction", FailInfo.BAD_CERT_ID)
    if not hmac.compare_digest(record.signer_key_fingerprint, attempt.signer_key_fingerprint):
        return _refuse("the poll is not signed by the key of the original request")
    return _resume(record, attempt, kem_challenge, proof_checked, now)


def _after_policy(state: TxState | None, attempt: Attempt, verdict: PolicyVerdict | None) -> Action:
    """A request the policy decides: a new transaction, or a new request under a finished one."""
    if verdict is None:
        return Action(ActionKind.EVALUATE_POLICY)
    if verdict.refused:
        # A refused request leaves no transaction behind: the device may fix it and retry.
        return _refuse(verdict.text, verdict.fail_info, failed_attempt=verdict.failed_attempt)
    if verdict.hold:
        action = _move(ActionKind.PENDING, state, Event.HOLD)
    elif attempt.kem_challenge_mode:
        action = _move(ActionKind.SEND_KEM_CHALLENGE, state, Event.CHALLENGE)
    else:
        action = _move(ActionKind.ISSUE, state, Event.ISSUE)
    if verdict.spend_challenge is not None and action.write is not None:
        action = dataclasses.replace(action, write=dataclasses.replace(action.write,
                                                                       spend_challenge=verdict.spend_challenge))
    return action


def _resume(record: StoredTransaction, attempt: Attempt, kem_challenge, proof_checked, now) -> Action:
    """The answer a repeated request or a poll gets from the transaction's state."""
    state = record.state
    if state == TxState.ISSUED:
        return Action(ActionKind.REPLAY_CERTIFICATE)
    if state == TxState.AWAITING_APPROVAL:
        return Action(ActionKind.PENDING)
    if state == TxState.REJECTED:
        return _refuse(record.fail_text or "request rejected")
    if state == TxState.AWAITING_KEM_PROOF or (state == TxState.APPROVED and attempt.kem_challenge_mode):
        return _kem_proof(state, attempt, kem_challenge, proof_checked, now)
    return _move(ActionKind.ISSUE, state, Event.ISSUE)  # APPROVED, no proof owed


def _kem_proof(state: TxState, attempt: Attempt, challenge: KemChallengeView | None, checked: bool,
               now: datetime) -> Action:
    """Draft section 7.2: a request without a proof gets the live challenge again, unchanged
    (RFC 8894 section 3.3.1), or a fresh one when it expired or was spent; a proof spends the
    challenge, whatever follows, and must match it."""
    if not attempt.has_kem_proof:
        return _move(ActionKind.SEND_KEM_CHALLENGE, state, Event.CHALLENGE)
    if not checked:
        return Action(ActionKind.CHECK_KEM_PROOF)
    if challenge is None:
        return _refuse("no KEM proof-of-possession challenge was issued for this transaction")
    if challenge.spent_before:
        return _refuse("the KEM proof-of-possession challenge was already answered; send the request again")
    if challenge.expires_at <= now:
        return _refuse("the KEM proof-of-possession challenge has expired; send the request again", FailInfo.BAD_TIME)
    if not hmac.compare_digest(challenge.signer_key_fingerprint, challenge.request_signer_fingerprint):
        return _refuse("the KEM proof is not signed by the certificate of the request")
    if not hmac.compare_digest(challenge.csr_digest, challenge.request_csr_digest):
        return _refuse("the KEM challenge was issued for another CSR")
    if challenge.mac_error is not None:
        fail_info, text = challenge.mac_error
        return _refuse(text, fail_info)
    return _move(ActionKind.ISSUE, state, Event.ISSUE)
