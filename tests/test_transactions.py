"""The transaction state machine (pqscep.ca.transactions), with no I/O: every transition of
the table, a refused move from each state, and the decisions a request gets in each state,
including the KEM challenge's expiry on a fake clock, approval, rejection and replay.

The same table is exercised over real HTTP by tests/test_service.py, test_kem_pop.py and
test_interop.py; here each rule is checked alone, in microseconds.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pqscep.ca.transactions import (
    TRANSITIONS,
    Action,
    ActionKind,
    Attempt,
    Event,
    KemChallengeView,
    PolicyVerdict,
    TransitionError,
    TxState,
    Write,
    check_write,
    decide,
    sources_of,
    target_of,
)
from pqscep.protocol.messages import FailInfo

S = TxState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY, OTHER_KEY = b"k" * 32, b"o" * 32
CSR, OTHER_CSR = b"csr-1", b"csr-2"
TTL = timedelta(minutes=10)


class FakeClock:
    """The clock the decisions run on: moved by the test, never by time passing."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@dataclass(frozen=True)
class Stored:
    """A stored transaction, as storage.TransactionRecord presents it to `decide`."""

    state: TxState
    signer_key_fingerprint: bytes = KEY
    csr_der: bytes | None = CSR
    fail_text: str | None = None


def enroll(csr: bytes = CSR, *, key: bytes = KEY, kem: bool = False, proof: bool = False) -> Attempt:
    return Attempt(signer_key_fingerprint=key, csr_der=csr, kem_challenge_mode=kem, has_kem_proof=proof)


def poll(*, key: bytes = KEY, kem: bool = False, proof: bool = False) -> Attempt:
    return Attempt(signer_key_fingerprint=key, csr_der=None, kem_challenge_mode=kem, has_kem_proof=proof)


def challenge(clock: FakeClock, **changes: object) -> KemChallengeView:
    """A KEM challenge sent now, for CSR and KEY, whose MAC verified."""
    view = KemChallengeView(
        expires_at=clock.now + TTL, spent_before=False, signer_key_fingerprint=KEY,
        csr_digest=hashlib.sha256(CSR).digest(), mac_error=None,
        request_csr_digest=hashlib.sha256(CSR).digest(), request_signer_fingerprint=KEY,
    )
    return replace(view, **changes)  # type: ignore[arg-type]


def run(record: Stored | None, attempt: Attempt, now: datetime, *, verdict: PolicyVerdict | None = None,
        kem: KemChallengeView | None = None) -> Action:
    """What the service does: decide, feed the policy or the spent challenge when asked, decide again."""
    action = decide(record, attempt, now=now)
    if action.kind is ActionKind.EVALUATE_POLICY:
        assert verdict is not None, "the policy was asked, but the test gave no verdict"
        action = decide(record, attempt, verdict=verdict, now=now)
    elif action.kind is ActionKind.CHECK_KEM_PROOF:
        action = decide(record, attempt, kem_challenge=kem, proof_checked=True, now=now)
    assert action.kind not in (ActionKind.EVALUATE_POLICY, ActionKind.CHECK_KEM_PROOF), action
    return action


PASS = PolicyVerdict.passed()
HOLD = PolicyVerdict(hold=True)
REFUSED = PolicyVerdict(refused=True, fail_info=FailInfo.BAD_REQUEST, text="challenge password wrong",
                        failed_attempt=True)


# --- the table itself ---------------------------------------------------------------------


def test_every_state_has_its_row_and_every_target_is_a_state() -> None:
    assert set(TRANSITIONS) == {None, *TxState}
    for moves in TRANSITIONS.values():
        assert all(isinstance(target, TxState) for target in moves.values())


def test_every_state_is_reachable_from_a_new_transaction() -> None:
    seen: set[TxState] = set()
    frontier: list[TxState | None] = [None]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(TxState)


ALL_MOVES = [(state, event) for state, moves in TRANSITIONS.items() for event in moves]
REFUSED_MOVES = [(state, event) for state in [None, *TxState] for event in Event if event not in TRANSITIONS[state]]


@pytest.mark.parametrize("state, event", ALL_MOVES, ids=lambda x: getattr(x, "name", str(x)))
def test_each_allowed_move_is_a_write_the_store_accepts(state: TxState | None, event: Event) -> None:
    new = target_of(state, event)
    check_write(state, new)  # raises if the store would refuse it


@pytest.mark.parametrize("state, event", REFUSED_MOVES, ids=lambda x: getattr(x, "name", str(x)))
def test_each_refused_move_raises(state: TxState | None, event: Event) -> None:
    with pytest.raises(TransitionError):
        target_of(state, event)


def test_refused_writes_from_each_state() -> None:
    """One write the store must refuse from every state (and from none)."""
    refused = {
        None: S.APPROVED,  # approval needs an operator and a held request
        S.AWAITING_APPROVAL: S.ISSUED,  # no certificate before the operator says yes
        S.APPROVED: S.AWAITING_APPROVAL,
        S.AWAITING_KEM_PROOF: S.APPROVED,  # the operator approves only what waits for them
        S.ISSUED: S.APPROVED,
        S.REJECTED: S.APPROVED,
    }
    assert set(refused) == {None, *TxState}
    for state, new in refused.items():
        with pytest.raises(TransitionError):
            check_write(state, new)


def test_operator_commands_act_only_where_the_table_allows() -> None:
    assert sources_of(Event.APPROVE) == {S.AWAITING_APPROVAL}
    assert sources_of(Event.REJECT) == {S.AWAITING_APPROVAL, S.APPROVED, S.AWAITING_KEM_PROOF}
    assert target_of(S.AWAITING_APPROVAL, Event.APPROVE) is S.APPROVED
    for state in sources_of(Event.REJECT):
        assert target_of(state, Event.REJECT) is S.REJECTED


# --- a new transaction ----------------------------------------------------------------------


def test_new_request_asks_the_policy_first() -> None:
    assert decide(None, enroll(), now=T0).kind is ActionKind.EVALUATE_POLICY


@pytest.mark.parametrize("verdict, kem, kind, new", [
    (PASS, False, ActionKind.ISSUE, S.ISSUED),
    (PASS, True, ActionKind.SEND_KEM_CHALLENGE, S.AWAITING_KEM_PROOF),
    (HOLD, False, ActionKind.PENDING, S.AWAITING_APPROVAL),
    (HOLD, True, ActionKind.PENDING, S.AWAITING_APPROVAL),  # the operator first, the proof after
])
def test_new_request_after_the_policy(verdict: PolicyVerdict, kem: bool, kind: ActionKind, new: TxState) -> None:
    action = run(None, enroll(kem=kem), T0, verdict=verdict)
    assert (action.kind, action.write) == (kind, Write(None, new))


def test_refused_request_leaves_no_transaction() -> None:
    action = run(None, enroll(), T0, verdict=REFUSED)
    assert action == Action(ActionKind.REFUSE, None, FailInfo.BAD_REQUEST, "challenge password wrong", True)


def test_poll_for_an_unknown_transaction() -> None:
    action = run(None, poll(), T0)
    assert (action.kind, action.fail_info, action.write) == (ActionKind.REFUSE, FailInfo.BAD_CERT_ID, None)


# --- awaiting approval, approval, rejection -------------------------------------------------------


def test_held_request_stays_pending_without_asking_the_policy_again() -> None:
    record = Stored(S.AWAITING_APPROVAL)
    for attempt in (enroll(), poll()):  # a retransmission, then a poll
        assert decide(record, attempt, now=T0) == Action(ActionKind.PENDING)


def test_approved_request_is_issued_at_the_next_poll() -> None:
    record = Stored(target_of(S.AWAITING_APPROVAL, Event.APPROVE))
    for attempt in (poll(), enroll()):
        action = run(record, attempt, T0)
        assert (action.kind, action.write) == (ActionKind.ISSUE, Write(S.APPROVED, S.ISSUED))


def test_approved_ml_kem_request_is_challenged_then_issued() -> None:
    clock = FakeClock()
    record = Stored(S.APPROVED)
    action = run(record, poll(kem=True), clock.now)
    assert (action.kind, action.write) == (ActionKind.SEND_KEM_CHALLENGE, Write(S.APPROVED, S.AWAITING_KEM_PROOF))
    sent = challenge(clock)
    action = run(Stored(S.AWAITING_KEM_PROOF), poll(kem=True, proof=True), clock.advance(timedelta(minutes=1)),
                 kem=sent)
    assert (action.kind, action.write) == (ActionKind.ISSUE, Write(S.AWAITING_KEM_PROOF, S.ISSUED))


@pytest.mark.parametrize("attempt", [enroll(), poll()], ids=["retransmission", "poll"])
def test_rejected_request_gets_the_operators_reason(attempt: Attempt) -> None:
    record = Stored(S.REJECTED, fail_text="unknown device")
    action = run(record, attempt, T0)
    assert (action.kind, action.fail_info, action.text, action.write) == (
        ActionKind.REFUSE, FailInfo.BAD_REQUEST, "unknown device", None)


# --- replay --------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [enroll(), poll(), enroll(kem=True), poll(kem=True, proof=True)],
                         ids=["retransmission", "poll", "kem-retransmission", "kem-poll"])
def test_issued_transaction_replays_its_certificate(attempt: Attempt) -> None:
    assert decide(Stored(S.ISSUED), attempt, now=T0) == Action(ActionKind.REPLAY_CERTIFICATE)


@pytest.mark.parametrize("state", [S.ISSUED, S.REJECTED])
@pytest.mark.parametrize("verdict, new", [(PASS, S.ISSUED), (HOLD, S.AWAITING_APPROVAL)])
def test_new_csr_under_a_finished_transaction_starts_over(state: TxState, verdict: PolicyVerdict,
                                                          new: TxState) -> None:
    """micromdm and strongSwan derive the transactionID from the key, so a renewal with the
    same key reuses it: the policy decides the new CSR like a new request."""
    record = Stored(state)
    assert decide(record, enroll(OTHER_CSR), now=T0).kind is ActionKind.EVALUATE_POLICY
    action = run(record, enroll(OTHER_CSR), T0, verdict=verdict)
    assert action.write == Write(state, new)


@pytest.mark.parametrize("state", [S.AWAITING_APPROVAL, S.APPROVED, S.AWAITING_KEM_PROOF])
def test_new_csr_under_a_transaction_in_progress_is_refused(state: TxState) -> None:
    action = run(Stored(state), enroll(OTHER_CSR), T0)
    assert (action.kind, action.write) == (ActionKind.REFUSE, None)
    assert action.text == "transactionID already in use for another request in progress"


@pytest.mark.parametrize("state", list(TxState))
@pytest.mark.parametrize("attempt", [enroll(key=OTHER_KEY), poll(key=OTHER_KEY)], ids=["enroll", "poll"])
def test_another_key_never_moves_a_transaction(state: TxState, attempt: Attempt) -> None:
    """The store finds a transaction by its ID and CSR key (a poll: by its signer), so another
    CSR key is another transaction; what reaches here with another signer is the same CSR
    re-signed by someone else (the CSR is no secret), which may not take the transaction over."""
    action = run(Stored(state), attempt, T0)
    assert (action.kind, action.write) == (ActionKind.REFUSE, None)


# --- awaiting the KEM proof (draft section 7.2) ------------------------------------------------


def test_request_without_proof_gets_the_challenge_and_the_row_stays() -> None:
    """SEND_KEM_CHALLENGE sends the live challenge again, or a fresh one once it expired or was
    spent (the store's one conditional write picks which: tests/test_storage.py, and the same
    bytes again in tests/test_kem_pop.py)."""
    record = Stored(S.AWAITING_KEM_PROOF)
    for attempt in (enroll(kem=True), poll(kem=True)):
        # target_of allows the self-move; the row is not rewritten.
        assert target_of(S.AWAITING_KEM_PROOF, Event.CHALLENGE) is S.AWAITING_KEM_PROOF
        assert run(record, attempt, T0) == Action(ActionKind.SEND_KEM_CHALLENGE)


def test_proof_is_checked_before_anything_is_decided() -> None:
    assert decide(Stored(S.AWAITING_KEM_PROOF), poll(kem=True, proof=True), now=T0).kind is ActionKind.CHECK_KEM_PROOF


def test_kem_challenge_expires_on_the_clock() -> None:
    clock = FakeClock()
    sent = challenge(clock)
    record, attempt = Stored(S.AWAITING_KEM_PROOF), poll(kem=True, proof=True)
    clock.advance(TTL - timedelta(microseconds=1))
    assert run(record, attempt, clock.now, kem=sent).kind is ActionKind.ISSUE
    clock.advance(timedelta(microseconds=1))  # expires_at itself is too late
    late = run(record, attempt, clock.now, kem=sent)
    assert (late.kind, late.fail_info, late.write) == (ActionKind.REFUSE, FailInfo.BAD_TIME, None)
    assert "expired" in late.text


@pytest.mark.parametrize("changes, fail_info, text", [
    (None, FailInfo.BAD_REQUEST, "no KEM proof-of-possession challenge was issued for this transaction"),
    ({"spent_before": True}, FailInfo.BAD_REQUEST, "already answered"),
    ({"request_signer_fingerprint": OTHER_KEY}, FailInfo.BAD_REQUEST, "not signed by the certificate"),
    ({"request_csr_digest": hashlib.sha256(OTHER_CSR).digest()}, FailInfo.BAD_REQUEST, "another CSR"),
    ({"mac_error": (FailInfo.BAD_MESSAGE_CHECK, "the KEM proof does not verify")}, FailInfo.BAD_MESSAGE_CHECK,
     "the KEM proof does not verify"),
], ids=["no-challenge", "spent", "other-signer", "other-csr", "bad-mac"])
def test_bad_proofs_are_refused_and_write_nothing(changes: dict[str, object] | None, fail_info: FailInfo,
                                                  text: str) -> None:
    clock = FakeClock()
    view = None if changes is None else challenge(clock, **changes)
    action = run(Stored(S.AWAITING_KEM_PROOF), poll(kem=True, proof=True), clock.advance(timedelta(seconds=1)),
                 kem=view)
    assert (action.kind, action.fail_info, action.write) == (ActionKind.REFUSE, fail_info, None)
    assert text in action.text


# --- the state names live in one module -----------------------------------------------------------


SRC = Path(__file__).resolve().parents[1] / "src" / "pqscep"
# Migrations are history: each spells out the constraint it created, on purpose.
OWNERS = {SRC / "ca" / "transactions.py"}


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_state_names_appear_in_no_other_module() -> None:
    names = {state.value for state in TxState}
    offenders = {
        str(path.relative_to(SRC)): sorted(names & _string_constants(path))
        for path in SRC.rglob("*.py")
        if path not in OWNERS and "migrations" not in path.parts
    }
    assert {path: found for path, found in offenders.items() if found} == {}
