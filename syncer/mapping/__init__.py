"""Mappings: which destination fields hold what, as Jinja2 expressions over the resolved views.

A mapping file (``mappings/hubspot.yaml``) names, per destination object, the source view it is
made from (``users`` or ``accounts``), the destination field holding the product id (``key``),
and the fields::

    objects:
      contacts:
        source: users
        key: syncer_user_id
        hints: {email: user.email, primary_account_key: primary_account_id}
        associations: [companies]
        fields:
          email: {type: email, value: user.email}
          syncer_accounts: {type: tokens, value: "memberships | tokens('account_id', 'stage')"}
          syncer_stage: stage                       # short form: a string field

A ``value`` is a Jinja2 *expression* (``user.email``, ``members | emails``); a text with ``{{``
is a Jinja2 *template* rendered to a string. Templates are untrusted input: they run in a
``SandboxedEnvironment`` with ``StrictUndefined``, are compiled once when the mapping loads and
are checked then against sample views, so a mistake is a :class:`~syncer.errors.ConfigError`
naming file, line, field and what is wrong — before anything is read or written.

The modules, by concept: :mod:`~syncer.mapping.schema` (the file's shape),
:mod:`~syncer.mapping.load` (loading, the connector's objects), :mod:`~syncer.mapping.check`
(checking one value, errors in plain words), :mod:`~syncer.mapping.context` (the names a view
shows), :mod:`~syncer.mapping.filters` (syncer's filters, the sandbox),
:mod:`~syncer.mapping.compile` (values → callables) and :mod:`~syncer.mapping.objects` (what the
engine uses: :meth:`ObjectMapping.format`). The context variables and filters are listed in
``docs/mappings.md``.
"""

from syncer.mapping.compile import compile_value
from syncer.mapping.context import context_for
from syncer.mapping.filters import make_environment
from syncer.mapping.load import load_mapping
from syncer.mapping.objects import (
    AssociationMapping,
    FieldMapping,
    Formatted,
    MappingFile,
    ObjectMapping,
)

__all__ = [
    "AssociationMapping",
    "FieldMapping",
    "Formatted",
    "MappingFile",
    "ObjectMapping",
    "compile_value",
    "context_for",
    "load_mapping",
    "make_environment",
]
