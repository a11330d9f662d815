"""The emulated Salesforce org's schema: objects, fields, describe output and record ids.

Standard fields carry the lengths a real org has (Account.Name 255, Contact.LastName 80,
Contact.Email 80, ...). Custom fields are added at run time through the Tooling API
(`syncer.testing.salesforce_org.Org.create_custom_field`). Field and object names are
case-insensitive, as in the REST API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# Two characters a real id carries for the instance ("pod"), then one reserved character.
_POD = "Rm0"


class SalesforceApiError(Exception):
    """A whole-request failure, answered as Salesforce does: ``[{message, errorCode, fields}]``.

    ``fields`` is left out of the body when ``None`` (Salesforce omits it for session and
    limit errors).
    """

    def __init__(
        self, status: int, code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        """The JSON body Salesforce sends with this error."""
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


def case_safe_id(id15: str) -> str:
    """Append Salesforce's 3-character case-safe suffix to a 15-character id."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _SUFFIX_CHARS[bits]
    return id15 + suffix


def make_id(prefix: str, number: int) -> str:
    """An 18-character id: 3-char key prefix, pod, base-62 counter, case-safe suffix."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return case_safe_id(prefix + _POD + digits.rjust(9, "0"))


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "currency": "xsd:double",
    "int": "xsd:int",
    "datetime": "xsd:dateTime",
    "date": "xsd:date",
}
STRING_TYPES = frozenset({"string", "email", "url", "phone", "textarea", "picklist"})


@dataclass
class FieldDef:
    """One field of an object, with what describe reports about it."""

    name: str
    label: str
    type: str
    length: int = 0
    custom: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    reference_to: str | None = None
    relationship_name: str | None = None
    # Field-level security for the integration user: a field the user cannot see is absent
    # from describe and rejected as an unknown column, exactly like a field that does not exist.
    accessible: bool = True
    field_id: str | None = None
    precision: int = 0
    scale: int = 0

    @property
    def filterable(self) -> bool:
        """Long text areas cannot be used in a SOQL WHERE clause."""
        return not (self.type == "textarea" and self.length > 255)

    def describe(self) -> dict[str, Any]:
        """This field as an entry of ``fields`` in a describe answer."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": self.precision,
            "scale": self.scale,
            "digits": 9 if self.type == "int" else 0,
            "custom": self.custom,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "idLookup": self.type == "id" or self.external_id or self.name == "Email",
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "filterable": self.filterable,
            "calculated": False,
            "defaultedOnCreate": self.type in ("id", "boolean", "datetime") and not self.custom,
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "picklistValues": [],
        }


@dataclass
class ObjectDef:
    """An sObject type: its name, key prefix and fields (looked up case-insensitively)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)

    def add(self, fdef: FieldDef) -> None:
        """Add a field (or replace the one with the same name)."""
        self.fields[fdef.name.lower()] = fdef

    def get_field(self, name: str) -> FieldDef | None:
        """The field the integration user can see under ``name``, or ``None``."""
        fdef = self.fields.get(name.lower())
        return fdef if fdef is not None and fdef.accessible else None

    def relationship(self, name: str) -> FieldDef | None:
        """The visible reference field whose relationship name is ``name``, or ``None``."""
        wanted = name.lower()
        for fdef in self.fields.values():
            if fdef.accessible and (fdef.relationship_name or "").lower() == wanted:
                return fdef
        return None

    def urls(self, base: str) -> dict[str, str]:
        """The ``urls`` block of describe answers; ``base`` is ``/services/data/vXX.X``."""
        root = f"{base}/sobjects/{self.name}"
        return {"sobject": root, "describe": f"{root}/describe", "rowTemplate": f"{root}/{{ID}}"}

    def describe(self, base: str) -> dict[str, Any]:
        """The answer of ``GET sobjects/{type}/describe/``."""
        return {
            **self.summary(base),
            "fields": [f.describe() for f in self.fields.values() if f.accessible],
            "childRelationships": [],
            "recordTypeInfos": [],
        }

    def summary(self, base: str) -> dict[str, Any]:
        """This object as an entry of the global describe (``GET sobjects/``)."""
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": False,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "searchable": True,
            "urls": self.urls(base),
        }


def _system_fields() -> list[FieldDef]:
    return [
        FieldDef("Id", "Record ID", "id", 18, nillable=False, createable=False, updateable=False),
        FieldDef("IsDeleted", "Deleted", "boolean", nillable=False, createable=False,
                 updateable=False),
        FieldDef("CreatedDate", "Created Date", "datetime", nillable=False, createable=False,
                 updateable=False),
        FieldDef("LastModifiedDate", "Last Modified Date", "datetime", nillable=False,
                 createable=False, updateable=False),
    ]  # fmt: skip


def standard_objects() -> dict[str, ObjectDef]:
    """Account and Contact with the standard fields syncer's connector touches."""
    account = ObjectDef("Account", "Account", "Accounts", "001")
    for fdef in [
        *_system_fields(),
        FieldDef("Name", "Account Name", "string", 255, nillable=False),
        FieldDef("Website", "Website", "url", 255),
        FieldDef("Phone", "Account Phone", "phone", 40),
        FieldDef("Industry", "Industry", "picklist", 255),
        FieldDef("BillingCity", "Billing City", "string", 40),
        FieldDef("NumberOfEmployees", "Employees", "int"),
        FieldDef("AnnualRevenue", "Annual Revenue", "currency", precision=18),
        FieldDef("Description", "Account Description", "textarea", 32000),
        FieldDef("ParentId", "Parent Account ID", "reference", 18, reference_to="Account",
                 relationship_name="Parent"),
    ]:  # fmt: skip
        account.add(fdef)
    contact = ObjectDef("Contact", "Contact", "Contacts", "003")
    for fdef in [
        *_system_fields(),
        FieldDef("FirstName", "First Name", "string", 40),
        FieldDef("LastName", "Last Name", "string", 80, nillable=False),
        # Compound of FirstName and LastName, computed by the platform.
        FieldDef("Name", "Full Name", "string", 121, nillable=False, createable=False,
                 updateable=False),
        FieldDef("Email", "Email", "email", 80),
        FieldDef("Phone", "Business Phone", "phone", 40),
        FieldDef("Title", "Title", "string", 128),
        FieldDef("LeadSource", "Lead Source", "picklist", 255),
        FieldDef("Description", "Contact Description", "textarea", 32000),
        FieldDef("AccountId", "Account ID", "reference", 18, reference_to="Account",
                 relationship_name="Account"),
    ]:  # fmt: skip
        contact.add(fdef)
    return {"account": account, "contact": contact}


# Tooling API Metadata.type -> (describe type, (min length, max length) or None, fixed length).
TOOLING_TYPES: dict[str, tuple[str, tuple[int, int] | None, int]] = {
    "Text": ("string", (1, 255), 0),
    "LongTextArea": ("textarea", (256, 131072), 0),
    "TextArea": ("textarea", None, 255),
    "Email": ("email", None, 80),
    "Url": ("url", None, 255),
    "Phone": ("phone", None, 40),
    "Number": ("double", None, 0),
    "Checkbox": ("boolean", None, 0),
    "Date": ("date", None, 0),
    "DateTime": ("datetime", None, 0),
}
# Salesforce allows the External ID and Unique attributes on these types only.
EXTERNAL_ID_TYPES = frozenset({"Text", "Number", "Email"})
