"""Settings that only the HTTP facade has: the optional bearer token and the CORS origins.

They live here, not in `flows.settings.Settings`, because no other process needs them.
Like that class they come from the environment, and an unsafe value stops the API from
starting rather than leaving it half protected.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
MAX_BODY_BYTES = 1024 * 1024


class ApiSettings(BaseSettings):
    """`TASKFLOWS_API_TOKEN` and `TASKFLOWS_CORS_ORIGINS` (comma separated)."""

    # hide_input_in_errors: a refused token must not be printed in the start-up error.
    model_config = SettingsConfigDict(
        env_prefix="TASKFLOWS_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    # When set, POST/PUT/PATCH/DELETE need `Authorization: Bearer <token>`.
    api_token: SecretStr | None = None
    # Browser origins allowed to call the API from another site; none by default.
    cors_origins: Annotated[list[str], NoDecode] = []

    @field_validator("api_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _refuse_weak_token(self) -> ApiSettings:
        token = self.api_token
        if token is not None and len(token.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"TASKFLOWS_API_TOKEN is too short to protect anything: use at least "
                f"{MIN_TOKEN_LENGTH} random characters (or unset it)"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list):
            origins = [str(origin).rstrip("/") for origin in value if str(origin).strip()]
            for origin in origins:
                parts = urlsplit(origin)
                if origin != "*" and (
                    parts.scheme not in ("http", "https") or not parts.netloc or parts.path
                ):
                    raise ValueError(
                        f"TASKFLOWS_CORS_ORIGINS: {origin!r} is not an origin such as "
                        "https://example.com or http://localhost:3000"
                    )
            return origins
        return value
