"""One settings object for every process (API, worker, `up`, the CLI), read from the
environment. An environment variable set to a blank value counts as unset.

The seed's variable names keep working: `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`,
`DB_PASSWORD` build the database URL when `DATABASE_URL` is not set, and `AGENT_API_HOST` /
`AGENT_API_PORT` build the agent's URL when `AGENT_API_URL` is not set. Fields whose
variable has a `TASKFLOWS_` prefix name it in `validation_alias`. An unsafe or unreadable
value stops a process at start-up rather than leaving it half configured.

This module stays light (no database, no Prefect): the HTTP-only CLI imports it.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, NoReturn, Union, get_args, get_origin
from urllib.parse import quote, urlsplit

from annotated_types import Ge, Gt, Le, Lt
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.errors import UnsafeExposure

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_TOKEN_LENGTH = 16
# Names only this machine can reach (addresses are checked by `is_loopback`).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Settings(BaseSettings):
    """Everything configurable, with the defaults `make up` uses."""

    # hide_input_in_errors: a refused token must not be printed in the start-up error.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    # Database: DATABASE_URL wins; otherwise the seed's DB_* variables; otherwise `up`
    # starts the embedded PostgreSQL and passes its URL on as DATABASE_URL.
    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    # Unset unless given: any DB_* variable (even without DB_HOST) means "this server".
    db_name: str | None = None
    db_user: str | None = None
    db_password: SecretStr | None = None
    db_pool_max: int = Field(default=10, ge=1, le=200)
    # How long an API request waits for a database connection before it answers 503: the
    # pool's 30 s made every request hang that long while PostgreSQL was down. Under load
    # a connection frees up in milliseconds, so a few seconds is a wait for an outage.
    db_wait_s: float = Field(default=5.0, gt=0, le=300)

    # Agent API (OpenAI-compatible).
    agent_api_url: str | None = None
    agent_api_host: str = "127.0.0.1"
    agent_api_port: int = 8080
    agent_api_key: SecretStr | None = None
    agent_timeout_s: float = Field(default=120.0, gt=0)
    # Ask the agent for streamed answers (live output): auto falls back per agent.
    agent_stream: Literal["auto", "on", "off"] = "auto"
    partial_interval_s: float = Field(default=0.1, gt=0)
    # The Prefect UI's progress artifact: first written once a run has lasted this long, then
    # at most this often (flows/artifacts.py); shorter runs show only their results table.
    progress_interval_s: float = Field(default=5.0, gt=0)
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
    # When set, the API wants `Authorization: Bearer <token>` (api/deps.py), and the CLI
    # sends it.
    api_token: SecretStr | None = Field(default=None, validation_alias="taskflows_api_token")
    # Browser origins allowed to call the API from another site (comma separated); none by
    # default.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[], validation_alias="taskflows_cors_origins"
    )
    # Where the CLI finds the API; http://127.0.0.1:$API_PORT when unset.
    api_url: str | None = Field(default=None, validation_alias="taskflows_api_url")
    # API processes (uvicorn workers); each has its own pool of `db_pool_max` connections.
    api_workers: int = Field(default=1, ge=1, le=32)

    # Prefect.
    prefect_api_url: str | None = None
    # Prefect's own setting; the links to flow runs and deployments start with it. When
    # unset: the API URL without `/api` (a self-hosted server's layout).
    prefect_ui_url: str | None = None
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

    # Exposure of the API (see check_exposure below and api/host_origin.py). Host names the API
    # answers to besides loopback and API_HOST (comma separated; "*" turns the check off).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=[], validation_alias="taskflows_allowed_hosts"
    )
    # API_HOST beyond loopback without TASKFLOWS_API_TOKEN is refused (`check_exposure`)
    # unless this is set.
    allow_no_token: bool = Field(default=False, validation_alias="taskflows_allow_no_token")
    # Live streams (SSE) one API process serves at once; one more gets a 503.
    max_streams: int = Field(default=500, ge=1, le=100_000)
    # A stream whose client has not taken a message within this many seconds is closed.
    stream_send_timeout_s: float = Field(default=30.0, gt=0)
    # The hot reads (/active, /recent, /{id}) answered from memory, dropped on every NOTIFY
    # of a change (api/read_cache.py); at most `read_cache_mb` MiB of answers per process.
    read_cache: bool = True
    read_cache_mb: int = Field(default=64, ge=1, le=65536)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        # `FOO=` in a shell or an env file means "not set": the default applies.
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("agent_concurrency")
    @classmethod
    def _valid_agent_concurrency(cls, value: str | None) -> str | None:
        AgentLimits.parse(value)  # refuse to start with a limit nobody can read
        return value

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

    @model_validator(mode="after")
    def _refuse_weak_token(self) -> Settings:
        token = self.api_token
        if token is not None and len(token.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"TASKFLOWS_API_TOKEN is too short to protect anything: use at least "
                f"{MIN_TOKEN_LENGTH} random characters (or unset it)"
            )
        return self

    @property
    def database_configured(self) -> bool:
        """True when the user pointed us at a database (so `up` must not embed one)."""
        return self.database_url is not None or any(
            value is not None
            for value in (self.db_host, self.db_name, self.db_user, self.db_password)
        )

    def resolved_database_url(self) -> str:
        """The libpq URL of the taskflows database."""
        if self.database_url:
            return self.database_url
        if self.database_configured:
            password = self.db_password.get_secret_value() if self.db_password else ""
            auth = quote(self.db_user or "postgres", safe="")
            if password:
                auth += ":" + quote(password, safe="")
            # No DB_HOST: the local server's default socket, as libpq reads an empty host
            # (never a silent embedded database when the user named one).
            host = self.db_host or ""
            name = quote(self.db_name or "taskflows", safe="")
            return f"postgresql://{auth}@{host}:{self.db_port}/{name}"
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

    def resolved_prefect_ui_url(self) -> str:
        """Base URL of the Prefect UI: `PREFECT_UI_URL`, else the API URL without `/api`."""
        if self.prefect_ui_url:
            return self.prefect_ui_url.rstrip("/")
        api = self.resolved_prefect_api_url()
        return api[: -len("/api")] if api.endswith("/api") else api

    def resolved_api_url(self) -> str:
        """Where the CLI finds the taskflows API."""
        return (self.api_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")


@dataclass(frozen=True)
class AgentLimits:
    """`AGENT_CONCURRENCY` read: a limit for every agent and overrides per agent name.

    `"4"`, `"4,gpt-4o=2"`, or `"gpt-4o=2"` (only that agent limited); see flows/agent_limits.py
    for how the limits are enforced.
    """

    default: int | None = None
    per_agent: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None) -> AgentLimits:
        """Read `AGENT_CONCURRENCY`; raise ValueError with a sentence on bad input."""
        default: int | None = None
        per_agent: dict[str, int] = {}
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            name, _, value = part.rpartition("=")
            try:
                limit = int(value)
            except ValueError:
                raise ValueError(
                    f"AGENT_CONCURRENCY: {part!r} is not a number or NAME=NUMBER"
                ) from None
            if limit < 1:
                raise ValueError(f"AGENT_CONCURRENCY: {part!r} must be at least 1")
            if name:
                per_agent[name.strip()] = limit
            else:
                default = limit
        return cls(default, per_agent)

    def limit_for(self, agent: str) -> int | None:
        return self.per_agent.get(agent, self.default)


def settings_problems(error: ValidationError) -> list[str]:
    """One sentence per refused setting, naming its environment variable and what it must
    be, e.g. `WORKER_CONCURRENCY must be a whole number between 1 and 1000, got "abc"`.

    The refused value is quoted only for settings that hold no secret (a token or a password
    must never reach a terminal or a log).
    """
    sentences: dict[str, str] = {}
    for item in error.errors():
        variable = str(item["loc"][0]).upper() if item["loc"] else ""
        if variable in sentences:
            continue  # one sentence per setting, even when pydantic found several faults
        field = _field_for(variable)
        message = str(item["msg"]).removeprefix("Value error, ")
        requirement = _requirement(field) if field is not None else None
        if item["type"] == "value_error" or field is None:
            # Our own validators' messages already name the variable (the token check has
            # no variable in `loc`, as it is a rule about the whole model).
            sentence = message if not variable or variable in message else f"{variable}: {message}"
        elif requirement is None:
            sentence = f"{variable}: {message}"
        else:
            sentence = f"{variable} must be {requirement}"
            if not _is_secret(field) and isinstance(item.get("input"), str):
                sentence += f", got {_quoted(item['input'])}"
        sentences[variable] = sentence
    return list(sentences.values())


def exit_for_settings(program: str, sentences: list[str], *, code: int = 1) -> NoReturn:
    """End a process that cannot start with these settings: each sentence on stderr after
    `program: `, no traceback, exit status `code`."""
    for sentence in sentences:
        print(f"{program}: {sentence}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def settings_or_exit(program: str, *, code: int = 1) -> Settings:
    """The process-wide settings, or the end of the process with a sentence per bad setting:
    what every long-lived process (the API, the worker, `up`) calls first."""
    try:
        return get_settings()
    except ValidationError as error:
        exit_for_settings(program, settings_problems(error), code=code)


def check_exposure(api_host: str, api_token: SecretStr | None, *, allow_no_token: bool) -> None:
    """Refuse to serve `api_host` beyond loopback without a token, unless explicitly allowed.

    Listening beyond loopback without `TASKFLOWS_API_TOKEN` would hand every prompt, answer
    and memory (and the agent's bill) to anyone on the network. The API checks it at start,
    and `up` before it starts anything.
    """
    if api_token is not None or allow_no_token or is_loopback(api_host):
        return
    raise UnsafeExposure(
        f"API_HOST={api_host} makes the API reachable from other machines, and without "
        "TASKFLOWS_API_TOKEN anyone there could read every run and start new ones. Set "
        "TASKFLOWS_API_TOKEN to a long random secret (or TASKFLOWS_ALLOW_NO_TOKEN=true if "
        "something else in front of the API authenticates its users)."
    )


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _field_for(variable: str) -> FieldInfo | None:
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else name
        if alias.upper() == variable:
            return info
    return None


def _requirement(field: FieldInfo) -> str | None:
    """What a value of `field` must be, in words; None for kinds without a simple rule."""
    # `int | None` is an int that may be unset; other unions have no one rule to state.
    kinds = [kind for kind in _kinds(field) if kind is not type(None)]
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    if kind is bool:
        return "true or false"
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(kind))
    if kind not in (int, float):
        return None
    what = "a whole number" if kind is int else "a number"
    bounds = {
        type(rule).__name__: getattr(rule, type(rule).__name__.lower())
        for rule in field.metadata
        if isinstance(rule, Ge | Gt | Le | Lt)
    }
    low, high = bounds.get("Ge"), bounds.get("Le")
    if low is not None and high is not None:
        return f"{what} between {low} and {high}"
    if "Gt" in bounds:
        return f"{what} greater than {bounds['Gt']}"
    if low is not None:
        return f"{what} of at least {low}"
    if high is not None:
        return f"{what} of at most {high}"
    return what


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in _kinds(field)


def _kinds(field: FieldInfo) -> tuple[Any, ...]:
    """The types a field's value may have: `int | None` -> (int, NoneType)."""
    annotation = field.annotation
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _quoted(value: str, limit: int = 60) -> str:
    shown = value if len(value) <= limit else value[: limit - 3] + "..."
    return json.dumps(shown, ensure_ascii=False)


def _environ() -> dict[str, str]:
    import os

    return {key.upper(): value for key, value in os.environ.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
