"""High-water marks: one subject's mark (a membership, an account, a lead stage) advanced by
its current stage, under the rules of :mod:`syncer.policies.stage`; and an account's own stage,
which is one such mark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from syncer.frozen import fast_init
from syncer.model import ACCOUNT_MARK, Account, Mark, StageLadder, UnknownStage
from syncer.policies.scale import StageScale, as_scale, lookup_stage, unknown_stage


def live_mark(mark: Mark, scale: StageScale) -> tuple[str, int] | None:
    """``(canonical stage, rank)`` of a live mark, ``None`` for a tombstone."""
    if mark.churned or mark.stage is None:
        return None
    try:
        name, rank = scale.lookup(mark.stage)
    except UnknownStage as exc:
        raise unknown_stage(
            exc,
            scale,
            user_id=mark.user_id or None,
            account_id=mark.account_id or None,
            source="policy_marks",
        ) from None
    return None if rank < 0 else (name, rank)


def advance_mark(
    previous: Mark | None,
    stage: str | None,
    rank: int,
    scale: StageScale,
    *,
    subject: str,
    user_id: str,
    account_id: str,
    now: datetime,
) -> tuple[Mark, str | None, int]:
    """The next mark of one subject, given its previous mark and its current canonical stage.

    ``stage is None`` means the subject left the store; ``rank < 0`` means its row says churned.
    Returns ``(mark, mark stage or None, mark rank or -1)``; ``mark is previous`` when nothing
    changed, so callers detect changes by identity.
    """
    if stage is None or rank < 0:
        if previous is not None and previous.churned and previous.stage is None:
            return previous, None, -1
        return Mark(subject, user_id, account_id, None, True, now), None, -1
    live = live_mark(previous, scale) if previous is not None else None
    if live is not None:
        mark_name, mark_rank = live
        if mark_rank >= rank:
            if mark_name == previous.stage:  # type: ignore[union-attr]  # live implies previous
                return previous, mark_name, mark_rank  # type: ignore[return-value]
            return Mark(subject, user_id, account_id, mark_name, False, now), mark_name, mark_rank
    # No live mark (first sight, or back after churn): a new mark from the current stage.
    return Mark(subject, user_id, account_id, stage, False, now), stage, rank


def member_mark(
    previous: Mark | None, stage: str, rank: int, scale: StageScale
) -> tuple[str | None, int]:
    """The mark a membership has this run, for the account-side view (which saves nothing).

    Same rule as :func:`advance_mark`, without building the :class:`Mark`.
    """
    if rank < 0:
        return None, -1
    live = live_mark(previous, scale) if previous is not None else None
    if live is not None and live[1] >= rank:
        return live
    return stage, rank


# --- an account ---------------------------------------------------------------------------------


@fast_init  # built once per account of every plan
@dataclass(frozen=True, slots=True)
class AccountStage:
    """What the stage policy decided for one account's own stage; ``mark`` is its new mark."""

    stage: str
    rule: str
    churned: bool
    mark: Mark
    changed: bool


def resolve_account_stage(
    account: Account,
    previous: Mark | None,
    ladder: StageLadder | StageScale,
    *,
    now: datetime | None = None,
) -> AccountStage:
    """The account's own stage: the same high-water rule over the account row's history."""
    scale = as_scale(ladder)
    aid = account.account_id
    if account.stage is None:
        stage, rank = scale.lowest, 0
    else:
        stage, rank = lookup_stage(scale, account.stage, None, aid, "accounts")
    mark, mark_stage, _ = advance_mark(
        previous,
        stage,
        rank,
        scale,
        subject=ACCOUNT_MARK,
        user_id="",
        account_id=aid,
        now=now or datetime.now(UTC),
    )
    if mark_stage is None:
        return AccountStage(scale.churned, "account churned", True, mark, mark is not previous)
    if account.stage is None and mark_stage == stage:
        rule = f"no stage in the store: lowest stage {stage}"
    elif mark_stage != stage:
        rule = f"high-water mark: {mark_stage} (now {stage})"
    else:
        rule = f"account stage: {stage}"
    return AccountStage(mark_stage, rule, False, mark, mark is not previous)
