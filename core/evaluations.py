"""Every state change of an evaluation: the one place that writes `Evaluation` rows, for the API (submit, cancel)
and the worker (claim, progress, finish), and the recovery sweep's re-queue of those a dead worker held.

An evaluation is held like a job (core.states): `worker` + `heartbeat_at`, taken by one conditional UPDATE and
every later write of the holder conditional on still holding it, so two deliveries never both run it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.states import LeaseLostError, aware, holder_is_dead
from core.tables import Evaluation, EvaluationStatus, utcnow

ENDED = frozenset({EvaluationStatus.succeeded, EvaluationStatus.failed, EvaluationStatus.cancelled})
MAX_ATTEMPTS = 3
"""Starts after which an evaluation whose worker keeps dying is failed instead of re-queued."""


def _changed(result: Any) -> int:
    """Rows an UPDATE matched."""
    return int(result.rowcount)


def queue_evaluation(*, session: Session, evaluation: Evaluation) -> Evaluation:
    """Store a validated evaluation as queued; the caller sends it to the queue afterwards."""
    evaluation.status, evaluation.cancel_requested, evaluation.attempts = EvaluationStatus.queued, False, 0
    session.add(evaluation)
    session.commit()
    return evaluation


def fail_unsent(*, session: Session, evaluation: Evaluation, error: str) -> None:
    """End an evaluation whose queue message could not be sent."""
    evaluation.status, evaluation.error, evaluation.finished_at = EvaluationStatus.failed, error, utcnow()
    session.commit()


def cancel_evaluation(*, session: Session, evaluation: Evaluation) -> None:
    """Cancel an unfinished evaluation: a queued one ends at once, a running one stops at its next image."""
    session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation.id, Evaluation.status == EvaluationStatus.queued.value)
        .values(status=EvaluationStatus.cancelled.value, cancel_requested=True, finished_at=utcnow())
    )
    session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation.id, Evaluation.status.not_in([s.value for s in ENDED]))
        .values(cancel_requested=True)
    )
    session.commit()
    session.refresh(evaluation)


def claim(evaluation_id: str, holder: str, lease_s: float) -> Evaluation | None:
    """Take the evaluation's lease and move it to running; returns the row as taken, or None when it ended, was
    cancelled while queued (it is ended now) or a live worker holds it."""
    with session_scope() as session:
        current = session.get(Evaluation, evaluation_id)
        if current is None or current.status in ENDED:
            return None
        if current.cancel_requested and current.status == EvaluationStatus.queued:
            session.execute(
                update(Evaluation)
                .where(Evaluation.id == evaluation_id, Evaluation.status == EvaluationStatus.queued.value)
                .values(status=EvaluationStatus.cancelled.value, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return None
        now = utcnow()
        free = [Evaluation.worker.is_(None), Evaluation.heartbeat_at < now - timedelta(seconds=lease_s)]
        if holder_is_dead(current.worker):
            free.append(Evaluation.worker == current.worker)
        result = session.execute(
            update(Evaluation)
            .where(
                and_(
                    Evaluation.id == evaluation_id,
                    Evaluation.status.not_in([s.value for s in ENDED]),
                    or_(*free),
                )
            )
            .values(
                worker=holder,
                heartbeat_at=now,
                attempts=Evaluation.attempts + 1,
                status=EvaluationStatus.running.value,
                started_at=current.started_at or now,
            )
            .execution_options(synchronize_session=False)
        )
        if _changed(result) != 1:
            return None
    with session_scope() as session:
        return session.get(Evaluation, evaluation_id)


def _update_held(session: Session, evaluation_id: str, holder: str, **values: Any) -> None:
    """Write columns of an unended evaluation we hold; LeaseLostError otherwise."""
    result = session.execute(
        update(Evaluation)
        .where(
            Evaluation.id == evaluation_id,
            Evaluation.worker == holder,
            Evaluation.status.not_in([s.value for s in ENDED]),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not _changed(result):
        raise LeaseLostError(f"evaluation {evaluation_id} is no longer held by {holder}")


def _end(session: Session, evaluation_id: str, holder: str, status: EvaluationStatus, **values: Any) -> None:
    _update_held(session, evaluation_id, holder, status=status.value, finished_at=utcnow(), **values)


class EvaluationControl(NamedTuple):
    """What the worker running an evaluation polls."""

    cancel: bool
    held: bool


def record_progress(evaluation_id: str, holder: str, done: int, total: int) -> EvaluationControl:
    """Store progress (renewing the lease) and say whether to cancel and whether the lease is still ours."""
    with session_scope() as session:
        try:
            _update_held(session, evaluation_id, holder, progress={"done": done, "total": total}, heartbeat_at=utcnow())
        except LeaseLostError:
            return EvaluationControl(cancel=False, held=False)
        cancel = session.scalar(select(Evaluation.cancel_requested).where(Evaluation.id == evaluation_id))
    return EvaluationControl(cancel=bool(cancel), held=True)


def renew(evaluation_id: str, holder: str) -> bool:
    """Refresh the heartbeat; False when the lease was lost."""
    with session_scope() as session:
        try:
            _update_held(session, evaluation_id, holder, heartbeat_at=utcnow())
        except LeaseLostError:
            return False
        return True


def succeed(evaluation_id: str, holder: str, result: dict[str, Any]) -> None:
    """End an evaluation we hold with its result."""
    with session_scope() as session:
        _end(session, evaluation_id, holder, EvaluationStatus.succeeded, result=result, error=None)


def fail(evaluation_id: str, holder: str, error: str) -> None:
    """End an evaluation we hold as failed, with the error its user reads."""
    with session_scope() as session:
        _end(session, evaluation_id, holder, EvaluationStatus.failed, error=error)


def cancelled(evaluation_id: str, holder: str) -> None:
    """End an evaluation we hold as cancelled (the user asked)."""
    with session_scope() as session:
        _end(session, evaluation_id, holder, EvaluationStatus.cancelled)


def release_stalled(now: datetime, lease_s: float, unclaimed_before: datetime | None) -> list[str]:
    """Running evaluations whose holder went silent or died are queued again (failed after MAX_ATTEMPTS
    starts), and with `unclaimed_before` queued ones never taken since then are stamped as re-sent; each by a
    conditional update, so one sweeper sends each once. Returns the ids to send."""
    chosen: list[str] = []
    stale = now - timedelta(seconds=lease_s)
    with session_scope() as session:
        rows = session.execute(
            select(
                Evaluation.id,
                Evaluation.status,
                Evaluation.worker,
                Evaluation.heartbeat_at,
                Evaluation.attempts,
                Evaluation.created_at,
            ).where(Evaluation.status.in_([EvaluationStatus.running.value, EvaluationStatus.queued.value]))
        ).all()
        for evaluation_id, status, holder, stamped, attempts, created in rows:
            beat = aware(stamped)
            same = (Evaluation.id == evaluation_id, Evaluation.status == status, Evaluation.attempts == attempts)
            if status == EvaluationStatus.running.value:
                if beat is not None and beat >= stale and not holder_is_dead(holder):
                    continue
                values: dict[str, Any] = {"status": EvaluationStatus.queued.value, "worker": None, "heartbeat_at": now}
                if attempts >= MAX_ATTEMPTS:
                    error = f"the worker running this evaluation stopped {attempts} times (last: {holder})"
                    values = {"status": EvaluationStatus.failed.value, "error": error, "finished_at": now}
            elif unclaimed_before is None or (beat or aware(created) or now) >= unclaimed_before:
                continue
            else:
                values = {"heartbeat_at": now}
            held = Evaluation.heartbeat_at.is_(None) if stamped is None else Evaluation.heartbeat_at == stamped
            result = session.execute(
                update(Evaluation).where(*same, held).values(**values).execution_options(synchronize_session=False)
            )
            if _changed(result) and values.get("status") != EvaluationStatus.failed.value:
                chosen.append(evaluation_id)
    return chosen
