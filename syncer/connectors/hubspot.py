"""HubSpot: companies and contacts upserted by syncer's unique properties, associations v4.

On ``hubspot-api-client`` 12.x, retries off (the engine retries, paces and bisects). Every call
goes through the HTTP base (:class:`syncer.connectors.http.HttpConnector`): rate-limit headers,
the shared status table, the daily budget (docs/api-fidelity.md: each call against HubSpot's
documentation).

* Companies are upserted by ``syncer_account_id``, contacts by ``syncer_user_id`` — unique
  properties ``ensure`` creates. A contact that existed before syncer (same email, no
  ``syncer_user_id``) is found by email first and adopted, so no duplicate is made.
* Every batch input carries the record key as ``objectWriteTraceId`` (HubSpot answers per-input
  errors, a 207, only then); results and errors are matched back by it, and a record or
  association pair the answer does not confirm is rejected, never taken for written.
* Associations: contact → company, ``primary`` with type 1 (and 279), others unlabeled 279.
* ``lifecyclestage`` (only if a mapping writes it): HubSpot ignores a move backwards unless the
  value is cleared first, so a record whose lifecycle stage changes is cleared, then written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, ClassVar

import hubspot.crm.associations.v4 as assoc_api
import hubspot.crm.objects as objects_api
import hubspot.crm.properties as properties_api
from pydantic import Field, SecretStr

from syncer.connectors.base import (
    AssociationChange,
    AssociationResult,
    Capabilities,
    ConnectorConfig,
    EnsureReport,
    ObjectSpec,
    RateLimit,
    WriteRecord,
    WriteResult,
)
from syncer.connectors.http import HttpAnswer, HttpConfig, HttpConnector
from syncer.connectors.hubspot_bodies import (
    association_inputs,
    association_results,
    clear_inputs,
    split_by_email,
    upsert_inputs,
    upsert_results,
)
from syncer.connectors.hubspot_properties import ensure_properties
from syncer.fields import FieldSpec, FieldType

__all__ = ["HubSpotConfig", "HubSpotConnector"]

_API_EXCEPTIONS = (objects_api.ApiException, properties_api.ApiException, assoc_api.ApiException)
_TEXT = FieldSpec("text", max_length=65_536)
LIFECYCLE = "lifecyclestage"


class HubSpotConfig(HttpConfig):
    """HubSpot settings (``settings:`` in syncer.yaml) and the private app's token; ``timeout``
    and ``daily_limit_share`` come from :class:`HttpConfig`."""

    access_token: SecretStr
    host: str = Field(default="https://api.hubapi.com", pattern=r"^https?://")
    property_group: str = Field(default="syncer", pattern=r"^[a-z][a-z0-9_]*$")


class HubSpotConnector(HttpConnector[HubSpotConfig]):
    """The HubSpot destination. See the module docstring."""

    name: ClassVar[str] = "hubspot"
    config_model: ClassVar[type[ConnectorConfig]] = HubSpotConfig
    # 100/10 s is the Free/Starter burst limit; the limiter adopts the portal's real limit
    # from the X-HubSpot-RateLimit-Max header of the first answer.
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=100,
        rate_limit=RateLimit(100, 10.0),
        associations=True,
        association_batch=100,
        removal_modes=frozenset({"none", "clear", "archive"}),
        concurrency=4,  # urllib3's pool is thread-safe; writes share no mutable state
        update_hints=frozenset(),  # the email matches a contact with no remote id only
    )
    objects: ClassVar[dict[str, ObjectSpec]] = {
        "companies": ObjectSpec("companies", "syncer_account_id", default_field=_TEXT),
        "contacts": ObjectSpec(
            "contacts",
            "syncer_user_id",
            fields={"email": FieldSpec("email", FieldType.EMAIL, max_length=254)},
            default_field=_TEXT,
            after=("companies",),
        ),
    }

    def __init__(self, config: HubSpotConfig) -> None:
        super().__init__(config)
        token = config.access_token.get_secret_value()
        self._batch = _api(objects_api, "BatchApi", config.host, token)
        self._props = _api(properties_api, "CoreApi", config.host, token)
        self._groups = _api(properties_api, "GroupsApi", config.host, token)
        self._assoc = _api(assoc_api, "BatchApi", config.host, token)

    # --- the contract ---------------------------------------------------------------------

    def write(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Upsert by syncer's unique property; contacts new to syncer matched by email first."""
        key_field = self.object_spec(object_name).key_field
        results: list[WriteResult] = []
        by_id: list[WriteRecord] = list(batch)
        if object_name == "contacts":
            by_email, by_id, refused = self._adopt_by_email(batch, key_field)
            results += refused
            if by_email:
                results += self._upsert(object_name, by_email, key_field, id_property="email")
        if by_id:
            results += self._upsert(object_name, by_id, key_field, id_property=key_field)
        return results

    def ensure(self, object_name: str, fields: Sequence[FieldSpec]) -> EnsureReport:
        """Create the property group and missing properties; report type mismatches."""
        return ensure_properties(
            self._hs,
            self._props,
            self._groups,
            object_name=object_name,
            key_field=self.object_spec(object_name).key_field,
            group=self.config.property_group,
            fields=fields,
        )

    def check(self) -> None:
        """One authenticated read (the contact property groups): a refused token is a
        ConfigError naming what to check, an unreachable host a RetriableError."""
        self._check_call(
            "GET contacts property groups",
            self._request(self._groups.get_all_with_http_info, "contacts"),
        )

    def associate(self, changes: Sequence[AssociationChange]) -> Sequence[AssociationResult]:
        """Create (primary: types 1 and 279) or archive contact → company associations."""
        results: list[AssociationResult] = []
        groups: dict[tuple[str, str, bool], list[AssociationChange]] = {}
        for change in changes:
            key = (change.from_object, change.to_object, change.remove)
            groups.setdefault(key, []).append(change)
        for (source, target, remove), group in groups.items():
            api = self._assoc
            call = api.archive_with_http_info if remove else api.create_with_http_info
            body = {"inputs": association_inputs(group, remove=remove)}
            answer = self._hs(f"POST associations {source}->{target}", call, source, target, body)
            # An archive answers 204 without a body: every pair is gone.
            results += (
                [AssociationResult(c) for c in group]
                if remove
                else association_results(group, answer)
            )
        return results

    def archive(self, object_name: str, batch: Sequence[WriteRecord]) -> Sequence[WriteResult]:
        """Archive records by their HubSpot id (HubSpot keeps them restorable for 90 days)."""
        inputs = [{"id": r.remote_id} for r in batch if r.remote_id]
        if inputs:
            call = self._batch.archive_with_http_info
            self._hs(f"POST {object_name} archive", call, object_name, {"inputs": inputs})
        return [WriteResult(r.key, r.remote_id) for r in batch]

    def close(self) -> None:
        for api in (self._batch, self._props, self._groups, self._assoc):
            pool = getattr(api.api_client.rest_client, "pool_manager", None)
            if pool is not None:
                pool.clear()

    # --- HubSpot specifics ----------------------------------------------------------------

    def _upsert(
        self, object_name: str, records: Sequence[WriteRecord], key_field: str, id_property: str
    ) -> list[WriteResult]:
        lifecycle = [r for r in records if LIFECYCLE in r.changes and r.remote_id]
        if lifecycle:
            # Clear first: HubSpot ignores a lifecycle stage moving backwards [unverified].
            self._hs(
                f"POST {object_name} clear lifecyclestage",
                self._batch.update_with_http_info,
                object_name,
                {"inputs": clear_inputs(lifecycle, LIFECYCLE)},
            )
        inputs, by_sent_id = upsert_inputs(records, key_field, id_property)
        answer = self._hs(
            f"POST {object_name} batch upsert ({len(inputs)} records)",
            self._batch.upsert_with_http_info,
            object_name,
            {"inputs": inputs},
        )
        return upsert_results(answer, key_field, id_property, by_sent_id)

    def _adopt_by_email(
        self, batch: Sequence[WriteRecord], key_field: str
    ) -> tuple[list[WriteRecord], list[WriteRecord], list[WriteResult]]:
        """Split new contacts into those matching a pre-existing HubSpot contact by email (to be
        upserted by email), the rest, and refusals (the email belongs to another user)."""
        new = [r for r in batch if r.remote_id is None and r.hints.get("email")]
        if not new:
            return [], list(batch), []
        emails = sorted({str(r.hints["email"]).strip().lower() for r in new})
        answer = self._hs(
            "POST contacts batch read by email",
            self._batch.read_with_http_info,
            "contacts",
            {
                "idProperty": "email",
                "inputs": [{"id": e} for e in emails],
                "properties": ["email", key_field],
            },
            ok=(404,),  # none of them exists
        )
        found = answer.get("results", [])
        by_email = {str(item["properties"].get("email", "")).lower(): item for item in found}
        return split_by_email(batch, by_email, key_field)

    def _hs(
        self, what: str, fn: Callable[..., Any], *args: Any, ok: Collection[int] = ()
    ) -> dict[str, Any]:
        """One API call through the HTTP base: its JSON body ({} if none or a status in ``ok``)."""
        answer = self._call(what, self._request(fn, *args), ok=ok)
        if answer.status in ok:
            return {}
        parsed = answer.json()
        return parsed if isinstance(parsed, dict) else {}

    def _request(self, fn: Callable[..., Any], *args: Any) -> Callable[[], HttpAnswer]:
        """``fn(*args)`` on the generated client as an :class:`HttpAnswer`, whatever the status."""
        timeout = self.config.timeout

        def send() -> HttpAnswer:
            try:
                r = fn(*args, _preload_content=False, _request_timeout=timeout)
            except _API_EXCEPTIONS as exc:
                if not exc.status:  # a transport failure the client wrapped: the base maps it
                    raise
                return HttpAnswer(exc.status, exc.headers or {}, exc.body)
            return HttpAnswer(r.status, r.headers, r.data)

        return send


def _api(package: Any, name: str, host: str, token: str) -> Any:
    """One generated API class on a client of its own package, retries off (the engine's)."""
    configuration = package.Configuration(host=host.rstrip("/"))
    configuration.access_token = token
    configuration.retries = False
    return getattr(package, name)(api_client=package.ApiClient(configuration=configuration))
