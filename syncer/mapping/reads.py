"""What a mapping's account records show of their members' user rows.

An account's record shows its members (``members``: :class:`~syncer.model.ResolvedMember`),
and of each member's user row its ``email``, ``first_name`` and ``last_name``. An incremental
run re-resolves the accounts of a user whose row changed only when the change is one of the
columns the account mappings read (:mod:`syncer.store.closure`): a first-name change does not
touch a company that shows its members' emails and stages.

The answer must never be too small, so it is read conservatively from each expression's syntax
tree: ``members`` may only be piped straight into ``tokens('…', …)`` with constant attribute
names (those read), ``emails`` (the email) or ``length``/``count`` (nothing). Any other use —
a loop, a ``set``, another filter, an attribute, a subscript — counts as reading every column.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from jinja2 import nodes

from syncer.mapping.compile import parse_value
from syncer.mapping.filters import make_environment
from syncer.mapping.objects import ObjectMapping

#: The members' fields that come from their user rows (named as the users columns).
MEMBER_FIELDS: frozenset[str] = frozenset({"email", "first_name", "last_name"})

_COUNTING = frozenset({"length", "count"})


def member_fields(objects: Iterable[ObjectMapping]) -> frozenset[str]:
    """The users columns the account-side ``objects`` (fields and hints) show of members."""
    found: set[str] = set()
    for obj in objects:
        if obj.source != "accounts":
            continue
        env = make_environment(obj.ladder)
        for text in (*(f.template for f in obj.fields), *obj.hints.values()):
            found |= expression_reads(parse_value(text, env))
            if found >= MEMBER_FIELDS:
                return MEMBER_FIELDS
    return frozenset(found)


def expression_reads(tree: nodes.Node) -> set[str]:
    """The member fields one parsed expression (or template) reads; all of them when it uses
    ``members`` in a way this does not follow."""
    found: set[str] = set()
    for node, parent in _walk(tree, None):
        if not (isinstance(node, nodes.Name) and node.name == "members"):
            continue
        read = _piped(node, parent)
        if read is None:
            return set(MEMBER_FIELDS)
        found |= read
    return found


def _piped(name: nodes.Name, parent: nodes.Node | None) -> set[str] | None:
    """What ``members | filter(...)`` reads, or ``None`` when it is not such a use."""
    if name.ctx != "load" or not isinstance(parent, nodes.Filter) or parent.node is not name:
        return None
    if parent.kwargs or parent.dyn_args is not None or parent.dyn_kwargs is not None:
        return None
    if parent.name in _COUNTING and not parent.args:
        return set()
    if parent.name == "emails" and not parent.args:
        return {"email"}
    if parent.name == "tokens" and parent.args:
        names: set[str] = set()
        for arg in parent.args:
            if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
                return None
            names.add(arg.value)
        return names & MEMBER_FIELDS
    return None


def _walk(
    node: nodes.Node, parent: nodes.Node | None
) -> Iterator[tuple[nodes.Node, nodes.Node | None]]:
    yield node, parent
    for child in node.iter_child_nodes():
        yield from _walk(child, node)


__all__ = ["MEMBER_FIELDS", "expression_reads", "member_fields"]
