"""The exceptions the stores raise; the API turns each into one HTTP status."""


class TaskflowsError(Exception):
    """Base of every error taskflows raises on purpose; its message is meant for people."""


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
