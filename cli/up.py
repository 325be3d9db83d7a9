"""`taskflows up`: what `make up` runs (`stack.up`), until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer


def up(
    context: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Where the API listens (API_HOST, default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="The API's port (API_PORT, default 8000).")
    ] = None,
) -> None:
    """Run everything on this machine (what `make up` runs), until Ctrl-C.

    PostgreSQL (embedded unless DATABASE_URL is set), the Prefect server (unless
    PREFECT_API_URL is set), the demo agent (unless an agent is configured), the worker
    and the API. Other options of `python -m stack.up` are passed through.
    """
    # Imported here: the other commands only talk HTTP and should start fast.
    from stack.up import main

    argv = list(context.args)
    if host is not None:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    raise typer.Exit(main(argv))
