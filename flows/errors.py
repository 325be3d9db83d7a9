"""Every exception taskflows raises on purpose, under one root, `TaskflowsError`.

Each message is a sentence for people: the API answers it as the body of an HTTP error (the
store errors below map to one status each), `make up`, the CLI and the bench print it
without a traceback.
"""


class TaskflowsError(Exception):
    """Base of every error taskflows raises on purpose; its message is meant for people."""


# -- the stores and the runtime (the API maps each to one HTTP status) -----------------------


class NotFoundError(TaskflowsError):
    """The thing asked for does not exist (HTTP 404)."""


class ConflictError(TaskflowsError):
    """The write clashes with the current state: a taken name, a stale version (HTTP 409)."""


class OrchestratorUnavailable(TaskflowsError):
    """The Prefect API could not be reached, so a run could not be started (HTTP 503)."""


class AgentError(TaskflowsError):
    """The agent did not answer a prompt usefully. `transient` says whether a retry may help.

    The message always names what went wrong (a timeout, an HTTP status and an excerpt of
    the answer, an empty answer): the old design stored empty errors.
    """

    def __init__(self, message: str, *, transient: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code
        self.attempts = 1  # set by the prompt task: how many times the prompt was sent


# -- clients and tools ---------------------------------------------------------------------


class ApiError(TaskflowsError):
    """The CLI's request to the taskflows API failed; the message says why in one sentence.
    `status` is the HTTP status (None when the API could not be reached at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TaskFlowFileError(TaskflowsError, ValueError):
    """A task flow file cannot be read as task flows; the message names the file and the
    problem."""


class AsCodeError(TaskflowsError):
    """Deployments as code cannot be applied for a reason the operator can fix."""


# -- running the stack on one machine (stack/) ------------------------------------------------


class UnsafeExposure(TaskflowsError, ValueError):
    """The API would listen beyond loopback without a token (see `flows.settings.check_exposure`):
    the API refuses to start, and `up` refuses before it starts anything."""


class StartError(TaskflowsError):
    """The system cannot start for a reason the user can fix (a port in use, a Prefect API
    that does not answer)."""


class ChildFailed(TaskflowsError):
    """A supervised process exited early or never became ready; the message ends with its
    log's tail."""


class EmbeddedPostgresError(TaskflowsError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""
