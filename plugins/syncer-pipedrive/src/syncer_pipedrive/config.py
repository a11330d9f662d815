"""The Pipedrive connector's configuration: its settings model and the declarations the engine
reads (objects, fields, capabilities), plus the Pipedrive facts the connector's code uses."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from syncer.connectors.base import Capabilities, ObjectSpec, RateLimit
from syncer.connectors.http import HttpConfig
from syncer.connectors.http_status import Action, Failure, StatusRule
from syncer.fields import FieldSpec, FieldType

__all__ = ["CAPABILITIES", "OBJECTS", "PipedriveConfig"]


class PipedriveConfig(HttpConfig):
    """Pipedrive settings (``settings:`` in syncer.yaml) and one credential (``credentials:``);
    ``timeout`` and ``daily_limit_share`` come from :class:`HttpConfig`."""

    api_token: SecretStr | None = None  # a user's API token, sent as the x-api-token header
    access_token: SecretStr | None = None  # an OAuth app's access token, sent as Bearer
    base_url: str = Field(default="https://api.pipedrive.com", pattern=r"^https?://")

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if (self.api_token is None) == (self.access_token is None):
            raise ValueError("set exactly one of api_token or access_token (OAuth)")
        return self


# One record per write call: the engine's limiter paces calls, and a record takes one or two
# requests, so a batch of one keeps the pace near Pipedrive's burst window (20 requests / 2 s on
# the smallest plan with an API token); the limiter adopts x-ratelimit-limit from the answers.
CAPABILITIES = Capabilities(
    max_batch=1,
    rate_limit=RateLimit(10, 2.0),
    removal_modes=frozenset({"none", "clear", "archive"}),
    concurrency=4,  # urllib3's pool is thread-safe; the connector's caches only grow
)
# Custom fields are Text (varchar): 255 characters, and a filter's "contains" matches substrings.
_VARCHAR = FieldSpec("varchar", max_length=255)
# Pipedrive's reference marks a person's and an organization's name required (v1; the v2 schema
# leaves it optional on paper): a `clear` removal keeps it rather than sending a null that the
# connector would have to drop (docs/api-fidelity.md, Pipedrive: POST persons, organizations).
_NAME = FieldSpec("name", required=True)
OBJECTS = {
    "organizations": ObjectSpec(
        "organizations",
        "syncer_account_id",
        fields={"name": _NAME},
        default_field=_VARCHAR,
    ),
    "persons": ObjectSpec(
        "persons",
        "syncer_user_id",
        fields={"name": _NAME, "email": FieldSpec("email", FieldType.EMAIL)},
        default_field=_VARCHAR,
        after=("organizations",),
    ),
}

API = "/api/v2"
FIELD_LISTS = {"organizations": "organizationFields", "persons": "personFields"}
#: Standard fields the connector writes at the top of a body; every other field is custom.
STANDARD = {"organizations": {"name"}, "persons": {"name", "email"}}
#: syncer field type → the Pipedrive custom field type ensure creates (default: varchar).
FIELD_TYPES = {FieldType.NUMBER: "double", FieldType.DATE: "date"}
#: Existing Pipedrive types a varchar field may be instead (longer, or autocompleted text).
TEXTUAL = {"varchar", "varchar_auto", "text"}
OVERRIDES = (
    StatusRule(
        402,
        Action.FATAL,
        Failure.CONFIG,
        "the Pipedrive company account is not open (trial expired or payment details missing)",
    ),
)
