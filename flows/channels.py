"""The PostgreSQL NOTIFY channels taskflows uses: every LISTEN and pg_notify names them from here.

- `EXECUTION_CHANGES`: sent by the triggers on `flow_executions` and `execution_results`
  (see `sql/`) on every change a reader can see (an insert, update or delete of an
  execution or of one of its results; a lease renewal is not one), payload `{"id", "status",
  "current_prompt_index"}` of the execution as it is now (status and index null once it is
  deleted; all null after a TRUNCATE: anything may have changed). The API's live feed
  (`api.live`, which also keeps the hot reads' cache right) and the worker (which stops runs
  cancelled by the API) listen.
- `PARTIAL_OUTPUT`: the agent's text while it is written (`flows.partials`), payload
  `{"id", "index", "attempt", "offset", "delta"}`; relayed by the live feed.
- `WORKER_WAKEUP`: sent by `deployments.launch.wake_workers` right after a flow run is
  created, so a worker asks Prefect for work at once instead of at its next poll.

The SQL migrations cannot import this module: their trigger names `EXECUTION_CHANGES` as a
literal, and `tests/test_stream.py` checks that the two agree.
"""

from __future__ import annotations

from typing import Final

EXECUTION_CHANGES: Final = "flow_executions"
PARTIAL_OUTPUT: Final = "flow_execution_partials"
WORKER_WAKEUP: Final = "taskflows_wakeup"
