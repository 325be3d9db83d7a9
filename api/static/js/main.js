// taskflows page: task flows, running flows, history and memories, kept live by the event
// stream (see stream.js). Each module owns one part of the page; the state they share is in
// store.js. This one wires them together and starts the page.

import { openSession } from './api.js';
import { initEditor, loadAgents } from './editor.js';
import { tickEnded } from './executions.js';
import { initFlows, loadFlows, renderFlows } from './flows.js';
import { initHistory, loadHistoryHead, openFromHash, renderHistory, tickHistory } from './history.js';
import { initMemories } from './memories.js';
import { initTokenDialog, setLive } from './notices.js';
import { initRunning, renderRunning, tickRunning } from './runs.js';
import { initSchedules } from './schedules.js';
import { onChange, state } from './store.js';
import { connect, disconnect } from './stream.js';
import { initTabs } from './tabs.js';

onChange(renderRunning);
onChange(renderHistory);

// With a token the server answers nothing without it: after it is given, load it all again.
initTokenDialog({
  onSaved: async () => {
    await openSession();
    connect();
    loadFlows();
    loadAgents();
    if (state.historyLoaded) loadHistoryHead();
  },
});
initRunning();
initHistory();
initFlows();
initEditor({ onSaved: loadFlows });
initSchedules({ onSaved: renderFlows });
initMemories();

// Elapsed times tick once a second (only while the tab is visible).
setInterval(() => {
  if (document.hidden) return;
  tickRunning();
  tickHistory();
  tickEnded();
}, 1000);

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    disconnect();
    setLive('paused');
  } else {
    connect();
    loadFlows();
    if (state.historyLoaded) loadHistoryHead();
  }
});

initTabs();
setLive('connecting');
loadFlows();
loadAgents();
openSession().then(connect);
openFromHash();
