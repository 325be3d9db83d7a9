"""The live view of executions behind `GET /api/executions/stream` (routes in
`api.routes.stream`):

- `feed`: ONE LISTEN connection per API process, fanned out to every open stream;
- `summary`: the execution summary the stream sends, defined once;
- `partials`: the agent's text while it is written, relayed and kept for late joiners;
- `sse`: how messages are written on the wire;
- `shutdown`: ending the streams when the server is told to stop.
"""

from api.live.feed import ExecutionFeed, Subscription, open_execution_feed
from api.live.summary import ExecutionSummary, Summaries

__all__ = [
    "ExecutionFeed",
    "ExecutionSummary",
    "Subscription",
    "Summaries",
    "open_execution_feed",
]
