"""The stage ladder on the hot path: canonical names and ranks of raw spellings, and an unknown
stage reported against the record it came from."""

from __future__ import annotations

from syncer.errors import Problem, UnknownStageError
from syncer.model import StageLadder, UnknownStage

Hit = tuple[str, int]
"""``(canonical stage name, rank)``."""


class StageScale:
    """A ladder's canonical names and ranks, with a cache of the raw spellings already seen.

    Store rows repeat a handful of spellings millions of times; the cache turns normalisation into
    one dict lookup. Build one per ladder and share it (the :class:`Resolver` does).
    """

    __slots__ = ("churned", "ladder", "lowest", "names", "spellings")

    def __init__(self, ladder: StageLadder) -> None:
        self.ladder = ladder
        self.names = ladder.names
        self.churned = ladder.churned
        self.lowest = ladder.lowest
        #: ``raw spelling -> (canonical name, rank)`` for every spelling seen so far (and every
        #: canonical name): hot loops read it directly and call :meth:`lookup` on a miss only.
        self.spellings: dict[str, tuple[str, int]] = {n: (n, i) for i, n in enumerate(ladder.names)}
        self.spellings[ladder.churned] = (ladder.churned, -1)

    def lookup(self, raw: str) -> tuple[str, int]:
        """``(canonical name, rank)`` of ``raw``; the churn marker ranks -1.

        Raises :class:`syncer.model.UnknownStage` for a value the ladder does not know.
        """
        hit = self.spellings.get(raw)
        if hit is None:
            name = self.ladder.normalize(raw)
            hit = (name, self.ladder.rank(name))
            self.spellings[raw] = hit
        return hit

    def rank(self, name: str) -> int:
        """Rank of a stage name (canonical or not); the churn marker is -1."""
        return self.lookup(name)[1]


def as_scale(ladder: StageLadder | StageScale) -> StageScale:
    """The :class:`StageScale` of ``ladder`` (itself if it already is one)."""
    return ladder if isinstance(ladder, StageScale) else StageScale(ladder)


def unknown_stage(
    exc: UnknownStage,
    scale: StageScale,
    *,
    user_id: str | None,
    account_id: str | None,
    source: str,
) -> UnknownStageError:
    """An :class:`UnknownStageError` naming the user, the account, the value and where it was
    (``source``: a store table, or ``policy_marks`` for the sync state's marks)."""
    who = []
    if user_id is not None:
        who.append(f"user {user_id!r}")
    if account_id is not None:
        who.append(f"account {account_id!r}")
    key = "/".join(k for k in (user_id, account_id) if k)
    column = _STAGE_COLUMNS.get(source)
    if column is None:
        hint = (
            "the sync state remembers a stage the configured ladder no longer has; put it back "
            "(or alias it to a stage) in the ladder configuration"
        )
    else:
        hint = (
            f"set {column} to one of {', '.join(scale.names)} or {scale.churned!r} in the store, "
            "or add an alias for it to the stage ladder in the configuration"
        )
    return UnknownStageError(
        Problem(
            f"{', '.join(who)}: unknown stage {exc.value!r} in {column or source}",
            field=column.split(".")[1] if column else "stage",
            key=key or None,
            hint=hint,
        ),
        column=column,
    )


# The store column each table's stage comes from (the tables ``source`` may name).
_STAGE_COLUMNS = {
    "memberships": "memberships.stage",
    "users": "users.lead_stage",
    "accounts": "accounts.stage",
}


def lookup_stage(scale: StageScale, raw: str, uid: str | None, aid: str | None, source: str) -> Hit:
    """:meth:`StageScale.lookup` with an unknown stage reported against its record (the user
    ``uid`` and account ``aid`` it came from, read from ``source``)."""
    try:
        return scale.lookup(raw)
    except UnknownStage as exc:
        raise unknown_stage(exc, scale, user_id=uid, account_id=aid, source=source) from None
