// Live updates: the event stream GET /api/executions/stream, or polling the same snapshot
// from GET /api/executions/summaries every 2 s while the stream fails. Nothing is asked while the tab
// is hidden.

import { applyPartial, applySnapshot, readSummaries, upsert } from './executions.js';
import { setLive } from './notices.js';
import { state } from './store.js';

const POLL_MS = 2000;
const STREAM_RETRY_MS = 10000;

const live = { source: null, pollTimer: 0, retryTimer: 0 };

export function connect() {
  disconnect();
  if (document.hidden) return setLive('paused');
  if (!('EventSource' in window)) return startPolling();
  // Asking for the executions we show as active tells us how they ended while we were away.
  const ids = [...state.active.keys()].slice(0, 200);
  const query = `?partials=true${ids.length ? `&ids=${ids.join(',')}` : ''}`;
  const source = new EventSource(`/api/executions/stream${query}`);
  live.source = source;
  setLive('connecting');
  source.addEventListener('snapshot', (event) => {
    stopPolling();
    setLive('live');
    applySnapshot(JSON.parse(event.data).executions);
  });
  source.addEventListener('execution', (event) => upsert(JSON.parse(event.data)));
  source.addEventListener('partial', (event) => applyPartial(JSON.parse(event.data)));
  source.addEventListener('error', () => {
    if (live.source !== source) return;
    // Poll meanwhile. The browser reconnects by itself (sending Last-Event-ID) unless the
    // stream is closed for good; then we open a new one later.
    startPolling();
    if (source.readyState === EventSource.CLOSED) {
      live.source = null;
      live.retryTimer = setTimeout(connect, STREAM_RETRY_MS);
    }
  });
}

export function disconnect() {
  if (live.source) live.source.close();
  live.source = null;
  clearTimeout(live.retryTimer);
  stopPolling();
}

function startPolling() {
  if (live.pollTimer) return;
  setLive('polling');
  poll();
  live.pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  clearInterval(live.pollTimer);
  live.pollTimer = 0;
}

async function poll() {
  if (document.hidden) return;
  try {
    applySnapshot(await readSummaries());
    if (live.pollTimer) setLive('polling');
  } catch {
    setLive('offline');
  }
}
