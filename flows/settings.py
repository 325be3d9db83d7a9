"""One settings object for every process (API, worker, `up`), read from the environment.

The seed's variable names keep working: `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`,
`DB_PASSWORD` build the database URL when `DATABASE_URL` is not set, and `AGENT_API_HOST` /
`AGENT_API_PORT` build the agent's URL when `AGENT_API_URL` is not set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything configurable, with the defaults `make up` uses."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Database: DATABASE_URL wins; otherwise the seed's DB_* variables; otherwise `up`
    # starts the embedded PostgreSQL and passes its URL on as DATABASE_URL.
    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "taskflows"
    db_user: str = "postgres"
    db_password: SecretStr | None = None
    db_pool_max: int = Field(default=10, ge=1, le=200)

    # Agent API (OpenAI-compatible).
    agent_api_url: str | None = None
    agent_api_host: str = "127.0.0.1"
    agent_api_port: int = 8080
    agent_api_key: SecretStr | None = None
    agent_timeout_s: float = Field(default=120.0, gt=0)
    # Ask the agent for streamed answers (live output): auto falls back per agent.
    agent_stream: Literal["auto", "on", "off"] = "auto"
    partial_interval_s: float = Field(default=0.1, gt=0)
    # Transient agent errors (connect errors, timeouts, 429, 5xx) are retried by Prefect
    # with exponential backoff and jitter: delays of base, 2*base, 4*base, ...
    agent_retries: int = Field(default=3, ge=0, le=20)
    agent_retry_delay_s: float = Field(default=1.0, ge=0)
    default_agent: str = "default"
    # Requests in flight per agent, across all workers: "4", "4,gpt-4o=2" (see agent_limits).
    agent_concurrency: str | None = None

    # The facade.
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Prefect.
    prefect_api_url: str | None = None
    work_pool: str = "taskflows"
    worker_concurrency: int = Field(default=50, ge=1, le=1000)
    worker_poll_s: float = Field(default=5.0, gt=0)
    # A worker renews the lease of each running execution every `lease_renew_s`; the
    # reconciler fails a running execution whose lease is older than `lease_expiry_s`.
    lease_renew_s: float = Field(default=5.0, gt=0)
    lease_expiry_s: float = Field(default=30.0, gt=0)
    reconcile_every_s: float = Field(default=5.0, gt=0)
    # Housekeeping of the Prefect server `up` starts: finished flow runs (with their task
    # runs, logs and artifacts) and events older than this many days are deleted.
    prefect_retention_days: int = Field(default=14, ge=1, le=3650)

    data_dir: Path = PROJECT_ROOT / ".data"

    @field_validator("agent_api_url", "database_url", "prefect_api_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("agent_concurrency")
    @classmethod
    def _valid_agent_concurrency(cls, value: str | None) -> str | None:
        from flows.agent_limits import AgentLimits

        AgentLimits.parse(value)  # refuse to start with a limit nobody can read
        return value

    @property
    def database_configured(self) -> bool:
        """True when the user pointed us at a database (so `up` must not embed one)."""
        return self.database_url is not None or self.db_host is not None

    def resolved_database_url(self) -> str:
        """The libpq URL of the taskflows database."""
        if self.database_url:
            return self.database_url
        if self.db_host:
            password = self.db_password.get_secret_value() if self.db_password else ""
            auth = quote(self.db_user, safe="")
            if password:
                auth += ":" + quote(password, safe="")
            return f"postgresql://{auth}@{self.db_host}:{self.db_port}/{self.db_name}"
        raise RuntimeError(
            "No database configured: set DATABASE_URL (or DB_HOST and friends), "
            "or start everything with `make up`, which runs an embedded PostgreSQL."
        )

    @property
    def agent_configured(self) -> bool:
        return (
            self.agent_api_url is not None
            or "AGENT_API_HOST" in _environ()
            or ("AGENT_API_PORT" in _environ())
        )

    def resolved_agent_url(self) -> str:
        """Base URL of the agent, without a trailing slash and without `/v1`."""
        url = self.agent_api_url or f"http://{self.agent_api_host}:{self.agent_api_port}"
        url = url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    def resolved_prefect_api_url(self) -> str:
        return (self.prefect_api_url or "http://127.0.0.1:4200/api").rstrip("/")

    def prefect_ui_url(self) -> str:
        """Base URL of the Prefect UI that belongs to the API URL (self-hosted layout)."""
        api = self.resolved_prefect_api_url()
        return api[: -len("/api")] if api.endswith("/api") else api


def _environ() -> dict[str, str]:
    import os

    return {key.upper(): value for key, value in os.environ.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
