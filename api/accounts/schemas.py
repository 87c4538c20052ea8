"""Users, login tokens and API keys (the book's chapter 7 schemas, extended)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from api.db.tables import API_KEY_NAME_MAX_LENGTH
from api.platform.fields import StoredText

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256


def _lowercase(value: str) -> str:
    return value.lower()


# Addresses are compared case-insensitively: stored and looked up in lower case.
Email = Annotated[EmailStr, AfterValidator(_lowercase)]
Password = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description=f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.",
    ),
]


class UserBase(BaseModel):
    email: Email


class UserCreate(UserBase):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "ada@example.com", "password": "correct horse"}]}
    )

    password: Password


# The fields of PATCH /users/me that change credentials: sent, they need `current_password`.
CREDENTIAL_FIELDS = ("email", "password")


class UserUpdate(BaseModel):
    """``PATCH /users/me``: any of the fields. Changing the email or the password needs the
    current password; a new password ends the other sessions and deletes every API key."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "ada@example.org", "current_password": "correct horse"}],
            # JSON Schema 2020-12: sending either field makes `current_password` required.
            "dependentRequired": {name: ["current_password"] for name in CREDENTIAL_FIELDS},
        }
    )

    email: Email | None = None
    password: Password | None = None
    # A string when sent (`null` is refused: it would mean "sent" to the schema's
    # dependentRequired and "missing" to the check below); None only when left out.
    current_password: SkipJsonSchema[None] | str = Field(
        default=None,
        max_length=PASSWORD_MAX_LENGTH,
        description="Your password now: required with `email` or `password` (else 422); a "
        "wrong one is refused with 403 and counts as a failed login for your account (429 "
        "with `Retry-After` over the limit).",
    )

    @field_validator("current_password", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("current_password must be a string")
        return value

    @model_validator(mode="after")
    def _current_password_with_credentials(self) -> UserUpdate:
        sent = [name for name in CREDENTIAL_FIELDS if name in self.model_fields_set]
        if sent and self.current_password is None:
            raise ValueError(f"current_password is required to change {' and '.join(sent)}")
        return self

    @property
    def changes_credentials(self) -> bool:
        return self.email is not None or self.password is not None


class UserAdminUpdate(BaseModel):
    """``PATCH /users/{user_id}`` (admins): activate or deactivate, promote or demote."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"is_active": False}]})

    is_active: bool | None = Field(
        default=None,
        description="`false` deactivates the user: every access token and API key is revoked "
        "and their streams are closed; logins are refused until reactivated.",
    )
    is_admin: bool | None = Field(
        default=None,
        description="`false` demotes the user and deletes their admin-scope API keys.",
    )


class UserRead(UserBase):
    """A user as the API shows it: never the password hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    is_active: bool
    is_admin: bool
    created_at: datetime


class Token(BaseModel):
    """The OAuth2 token response (what the docs' Authorize button expects)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"access_token": "x1Y...", "token_type": "bearer", "expires_in": 86400},
            ]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class CsrfToken(BaseModel):
    csrf_token: str = Field(description="Send it back in the `x-csrf-token` header.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "benchmarks"}]})

    name: StoredText = Field(min_length=1, max_length=API_KEY_NAME_MAX_LENGTH)
    admin: bool = Field(
        default=False,
        description="Admin scope: requests with this key get your admin rights (e.g. "
        "`DELETE /cache`). Only admins may ask for it.",
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    admin: bool = Field(
        default=False, validation_alias="is_admin", description="The key has the admin scope."
    )
    created_at: datetime


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself, shown this once: send it as `X-API-Key`.")
