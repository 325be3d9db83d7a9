// taskflows page: task flows, running flows, history and memories, kept live by the
// event stream GET /api/executions/stream (polling /api/executions/active every 2 s when
// the stream fails). Data is only ever put into the page as text (textContent), never as
// HTML. Nothing is fetched while the tab is hidden.
'use strict';

const ACTIVE = new Set(['queued', 'running']);
const RETRYABLE = new Set(['failed', 'cancelled']);
const POLL_MS = 2000;
const STREAM_RETRY_MS = 10000;
const PAGE_SIZE = 20;
// What the buttons say (their accessible names add what they act on).
const VERBS = { run: 'Run', edit: 'Edit', delete: 'Delete', save: 'Save', 'cancel-edit': 'Cancel' };

const state = {
  agents: [],
  defaultAgent: 'default',
  agentsError: null,
  flows: [],
  active: new Map(), // id -> execution summary, queued or running
  history: new Map(), // id -> execution summary, every execution shown in History
  historyOpen: false,
  historyLoaded: false,
  historyDone: false,
  expanded: new Set(),
  details: new Map(), // id -> full execution (with prompt_results)
  partials: new Map(), // id -> {index, attempt, text}: the answer the agent is writing
  memories: [],
  editing: null, // the task flow being edited, or null for a new one
};

const $ = (selector, root = document) => root.querySelector(selector);
const field = (root, name) => root.querySelector(`[data-f="${name}"]`);

// --- talking to the API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Call the API; resolve with the JSON body, or throw an ApiError carrying its sentence. */
async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const token = localStorage.getItem('taskflows-token');
  if (token && method !== 'GET') init.headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The server cannot be reached. Check that the API is running.');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: the sentence below says what happened
  }
  if (!response.ok) {
    const sentence = data && typeof data.error === 'string' ? data.error : `The server answered HTTP ${response.status}.`;
    if (response.status === 401) askForToken();
    throw new ApiError(response.status, sentence);
  }
  return data;
}

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// --- small helpers -------------------------------------------------------------------------

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

function formatStart(iso) {
  const date = new Date(iso);
  return date.toDateString() === new Date().toDateString() ? clockFormat.format(date) : dateFormat.format(date);
}

function formatDuration(ms) {
  if (!(ms >= 0)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} m ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} m`;
}

function formatClock(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function setTime(el, iso) {
  el.dateTime = iso;
  el.title = fullFormat.format(new Date(iso));
}

function setBadge(el, status) {
  el.className = `${el.className.replace(/\bs-\w+/g, '').trim()} s-${status}`;
  el.textContent = status;
}

function elapsedMs(execution) {
  const start = Date.parse(execution.status === 'queued' ? execution.queued_at : execution.started_at);
  const end = execution.completed_at ? Date.parse(execution.completed_at) : Date.now();
  return end - start;
}

/** Reorder, add and remove the children of `list` to match `items` (keyed by id), keeping
 * the elements that stay, so focus and scroll positions survive live updates. */
function syncList(list, items, create, update) {
  const existing = new Map([...list.children].map((el) => [el.dataset.key, el]));
  let cursor = list.firstElementChild;
  for (const item of items) {
    const key = String(item.id);
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    if (el === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(el, cursor);
  }
  for (const el of existing.values()) el.remove();
}

function fromTemplate(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

// --- notices --------------------------------------------------------------------------------

function toast(message, { error = false } = {}) {
  const box = document.createElement('div');
  box.className = error ? 'toast error' : 'toast';
  box.setAttribute('role', error ? 'alert' : 'status');
  const text = document.createElement('span');
  text.textContent = message;
  const close = document.createElement('button');
  close.type = 'button';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '✕';
  close.addEventListener('click', () => box.remove());
  box.append(text, close);
  $('#toasts').append(box);
  if (!error) setTimeout(() => box.remove(), 4000);
  else setTimeout(() => box.remove(), 12000);
}

function showFormError(box, message) {
  field(box, 'text').textContent = message;
  box.hidden = !message;
}

/** Run `action` with `button` disabled and showing `busyLabel`; errors become a toast. */
async function busy(button, busyLabel, action) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = busyLabel;
  try {
    await action();
  } catch (error) {
    toast(error.message, { error: true });
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

function confirmDialog(title, text, confirmLabel) {
  const dialog = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

function askForToken() {
  const dialog = $('#token-dialog');
  if (dialog.open) return;
  $('#token-input').value = localStorage.getItem('taskflows-token') || '';
  dialog.returnValue = '';
  dialog.showModal();
}

$('#token-dialog').addEventListener('close', (event) => {
  if (event.target.returnValue !== 'save') return;
  const token = $('#token-input').value.trim();
  if (token) localStorage.setItem('taskflows-token', token);
  else localStorage.removeItem('taskflows-token');
  toast('Token saved. Try again.');
});

// --- executions: state ------------------------------------------------------------------------

/** The stream's shape of an execution, from the API's full execution object. */
function summarize(execution) {
  if (!Array.isArray(execution.prompt_results)) return execution;
  const { prompt_results: results, prompts, ...rest } = execution;
  return {
    ...rest,
    current_prompt: prompts[execution.current_prompt_index] ?? null,
    results_count: results.length,
    last_result: results.length ? results[results.length - 1] : null,
  };
}

/** Take in a newer state of an execution, from the stream or a response. */
function upsert(incoming) {
  const execution = summarize(incoming);
  const id = execution.id;
  const known = state.active.get(id) || state.history.get(id);
  if (known && Date.parse(execution.updated_at) < Date.parse(known.updated_at)) return; // stale
  if (ACTIVE.has(execution.status)) state.active.set(id, execution);
  else state.active.delete(id);
  const partial = state.partials.get(id);
  if (partial && (partial.index < execution.current_prompt_index || execution.status !== 'running')) {
    state.partials.delete(id);
  }
  if (state.historyLoaded && (state.history.has(id) || id > oldestHistoryId() || state.historyDone)) {
    state.history.set(id, execution);
  }
  if (state.expanded.has(id) && (!known || known.results_count !== execution.results_count || known.status !== execution.status)) {
    loadDetails(id);
  }
  render();
}

function oldestHistoryId() {
  let oldest = Infinity;
  for (const id of state.history.keys()) oldest = Math.min(oldest, id);
  return oldest;
}

/** A snapshot lists every active execution (and the ones asked for): anything we thought
 * active that it does not list has ended, so read that one again. */
function applySnapshot(executions) {
  const listed = new Set();
  for (const execution of executions) {
    listed.add(execution.id);
    upsert(execution);
  }
  for (const id of [...state.active.keys()]) {
    if (!listed.has(id)) {
      state.active.delete(id);
      refreshExecution(id);
    }
  }
  render();
}

/** A piece of the answer being written: `delta` goes at character `offset`. */
function applyPartial({ id, index, attempt, offset, delta }) {
  const execution = state.active.get(id);
  if (!execution || index < execution.current_prompt_index) return;
  let partial = state.partials.get(id);
  if (!partial || partial.index !== index || partial.attempt !== attempt) {
    if (offset !== 0) return; // joined mid-answer: the final response will come anyway
    partial = { index, attempt, text: '' };
    state.partials.set(id, partial);
  }
  if (offset > partial.text.length) return; // a piece went missing
  partial.text = partial.text.slice(0, offset) + delta;
  render();
}

async function refreshExecution(id) {
  try {
    upsert(await api('GET', `/api/executions/${id}`));
  } catch (error) {
    if (error.status !== 404) setLive('offline');
  }
}

// --- executions: live updates -------------------------------------------------------------------

const live = { source: null, pollTimer: 0, retryTimer: 0 };

function setLive(mode) {
  const el = $('#live');
  el.dataset.mode = mode;
  el.textContent = { live: 'Live', polling: 'Polling every 2 s', paused: 'Paused', offline: 'Offline', connecting: 'Connecting…' }[mode];
}

function connect() {
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

function disconnect() {
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
    applySnapshot(await api('GET', '/api/executions/active'));
    if (live.pollTimer) setLive('polling');
  } catch {
    setLive('offline');
  }
}

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

// --- executions: rendering ------------------------------------------------------------------------

let renderQueued = false;

function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderRunning();
    renderHistory();
  });
}

function renderRunning() {
  const runs = [...state.active.values()].sort((a, b) => a.id - b.id);
  syncList($('#running'), runs, () => fromTemplate('tpl-run'), updateRunCard);
  $('#running-empty').hidden = runs.length > 0;
  $('#running-count').textContent = runs.length ? String(runs.length) : '';
  document.title = runs.length ? `(${runs.length}) taskflows` : 'taskflows';
}

function updateRunCard(card, execution) {
  const done = execution.current_prompt_index;
  const total = execution.total_prompts;
  const percent = total ? Math.round((100 * done) / total) : 0;
  card.dataset.status = execution.status;
  setBadge(field(card, 'status'), execution.status);
  field(card, 'name').textContent = execution.call_name;
  field(card, 'number').textContent = `#${execution.id}`;
  field(card, 'agent').textContent = `Agent ${execution.agent} · ${execution.trigger}`;
  const bar = card.querySelector('.progress');
  bar.setAttribute('aria-valuenow', String(percent));
  bar.setAttribute('aria-label', `${execution.call_name} progress`);
  bar.setAttribute('aria-valuetext', `${done} of ${total} prompts, ${percent}%`);
  card.querySelector('.progress-fill').style.width = `${percent}%`;
  field(card, 'progress').textContent = `${done} / ${total} prompts · ${percent}%`;

  const prompt = field(card, 'prompt');
  if (execution.status === 'queued') placeholder(prompt, 'Waiting for a worker…');
  else if (execution.current_prompt) text(prompt, `${done + 1}. ${execution.current_prompt}`);
  else placeholder(prompt, 'Finishing…');
  const last = execution.last_result;
  const response = field(card, 'response');
  const partial = state.partials.get(execution.id);
  const writing = partial && partial.index === done && execution.status === 'running';
  response.classList.toggle('writing', Boolean(writing));
  field(card, 'response-label').textContent = writing ? 'Writing…' : 'Latest response';
  if (writing) text(response, partial.text);
  else if (!last) placeholder(response, 'No response yet.');
  else if (last.success) text(response, last.response ?? '');
  else text(response, `Error: ${last.error}`);

  const elapsed = field(card, 'elapsed');
  elapsed.dataset.since = execution.status === 'queued' ? execution.queued_at : execution.started_at;
  elapsed.textContent = formatClock(elapsedMs(execution));
  const link = field(card, 'prefect');
  link.hidden = !execution.prefect_url;
  if (execution.prefect_url) link.href = execution.prefect_url;
  const cancel = card.querySelector('[data-act="cancel"]');
  cancel.setAttribute('aria-label', `Cancel ${execution.call_name} #${execution.id}`);
}

function text(el, value) {
  el.classList.remove('placeholder');
  el.textContent = value;
}

function placeholder(el, value) {
  el.classList.add('placeholder');
  el.textContent = value;
}

function renderHistory() {
  if (!state.historyLoaded) return;
  const rows = [...state.history.values()].sort((a, b) => b.id - a.id);
  syncList($('#history'), rows, () => fromTemplate('tpl-history'), updateHistoryRow);
  $('#history-empty').hidden = rows.length > 0;
  $('#history-more').hidden = state.historyDone;
}

function updateHistoryRow(row, execution) {
  setBadge(field(row, 'status'), execution.status);
  field(row, 'name').textContent = execution.call_name;
  field(row, 'number').textContent = `#${execution.id}`;
  const started = field(row, 'started');
  started.textContent = formatStart(execution.started_at);
  setTime(started, execution.started_at);
  const duration = field(row, 'duration');
  duration.textContent = execution.status === 'queued' ? 'queued' : formatDuration(elapsedMs(execution));
  duration.dataset.running = String(execution.status === 'running');
  field(row, 'progress').textContent = `${execution.current_prompt_index} / ${plural(execution.total_prompts, 'prompt')}`;
  field(row, 'trigger').textContent = execution.retry_of ? `retry of #${execution.retry_of}` : execution.trigger;
  const error = field(row, 'error');
  error.hidden = !execution.error;
  error.textContent = execution.error || '';
  // A cancelled run's reason is information, not an error: grey, not red.
  error.classList.toggle('note', execution.status === 'cancelled');
  const retry = row.querySelector('[data-act="retry"]');
  retry.hidden = !RETRYABLE.has(execution.status);
  retry.setAttribute('aria-label', `Retry ${execution.call_name} #${execution.id}`);
  const expand = row.querySelector('[data-act="expand"]');
  const open = state.expanded.has(execution.id);
  expand.setAttribute('aria-expanded', String(open));
  expand.setAttribute('aria-label', `Details of ${execution.call_name} #${execution.id}`);
  const details = row.querySelector('.hist-details');
  details.hidden = !open;
  const link = field(row, 'prefect');
  link.hidden = !execution.prefect_url;
  if (execution.prefect_url) link.href = execution.prefect_url;
  if (open) renderDetails(row, execution.id);
}

function renderDetails(row, id) {
  const full = state.details.get(id);
  const status = field(row, 'details-status');
  if (!full) {
    status.textContent = 'Loading…';
    return;
  }
  status.textContent = '';
  const byIndex = new Map(full.prompt_results.map((result) => [result.index, result]));
  const items = full.prompts.map((prompt, index) => ({ id: index, prompt, result: byIndex.get(index) }));
  syncList(row.querySelector('.results'), items, () => fromTemplate('tpl-result'), updateResult);
}

function updateResult(item, { id: index, prompt, result }) {
  field(item, 'n').textContent = `${index + 1}.`;
  field(item, 'prompt').textContent = prompt;
  const badge = field(item, 'status');
  const responsePair = field(item, 'response-pair');
  const error = field(item, 'error');
  item.classList.toggle('pending', !result);
  if (!result) {
    badge.className = 'badge small s-cancelled';
    badge.textContent = 'not run';
    field(item, 'stats').textContent = '';
    responsePair.hidden = true;
    error.hidden = true;
    return;
  }
  setBadge(badge, result.success ? 'completed' : 'failed');
  field(item, 'stats').textContent = resultStats(result);
  responsePair.hidden = !result.success;
  field(item, 'response').textContent = result.response ?? '';
  error.hidden = result.success;
  error.textContent = result.success ? '' : `Error: ${result.error}`;
}

function resultStats(result) {
  const parts = [];
  if (typeof result.duration_ms === 'number') parts.push(formatDuration(result.duration_ms));
  const usage = result.usage;
  if (usage && typeof usage.total_tokens === 'number') {
    parts.push(`${plural(usage.total_tokens, 'token')} (${usage.prompt_tokens ?? '?'} in, ${usage.completion_tokens ?? '?'} out)`);
  }
  if (result.attempts > 1) parts.push(plural(result.attempts, 'attempt'));
  return parts.join(' · ');
}

const detailsLoading = new Map();

/** Read an execution's prompt results; one request at a time per execution, and one more
 * after it when something changed meanwhile. */
async function loadDetails(id) {
  if (detailsLoading.has(id)) {
    detailsLoading.set(id, true);
    return;
  }
  detailsLoading.set(id, false);
  try {
    const full = await api('GET', `/api/executions/${id}`);
    state.details.set(id, full);
    upsert(full);
  } catch (error) {
    toast(error.message, { error: true });
  } finally {
    const again = detailsLoading.get(id);
    detailsLoading.delete(id);
    if (again) loadDetails(id);
    render();
  }
}

// Elapsed times tick once a second (only while the tab is visible).
setInterval(() => {
  if (document.hidden) return;
  for (const el of document.querySelectorAll('#running time[data-since]')) {
    el.textContent = formatClock(Date.now() - Date.parse(el.dataset.since));
  }
  for (const row of document.querySelectorAll('#history [data-f="duration"][data-running="true"]')) {
    const execution = state.history.get(Number(row.closest('li').dataset.key));
    if (execution) row.textContent = formatDuration(elapsedMs(execution));
  }
}, 1000);

// --- executions: actions ------------------------------------------------------------------------

$('#running').addEventListener('click', (event) => {
  const button = event.target.closest('[data-act="cancel"]');
  if (!button) return;
  const id = Number(button.closest('li').dataset.key);
  busy(button, 'Cancelling…', async () => {
    upsert(await api('POST', `/api/executions/${id}/cancel`));
    toast(`Cancelled #${id}.`);
  });
});

$('#history').addEventListener('click', (event) => {
  const button = event.target.closest('[data-act]');
  if (!button) return;
  const id = Number(button.closest('li.hist').dataset.key);
  if (button.dataset.act === 'expand') {
    if (state.expanded.has(id)) state.expanded.delete(id);
    else {
      state.expanded.add(id);
      loadDetails(id);
    }
    render();
  } else if (button.dataset.act === 'retry') {
    busy(button, 'Retrying…', async () => {
      const started = await api('POST', `/api/executions/${id}/retry`, undefined, { 'Idempotency-Key': newKey() });
      toast(`Retrying #${id} as #${started.execution_id}.`);
      await refreshExecution(started.execution_id);
    });
  }
});

$('#history-toggle').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  state.historyOpen = !state.historyOpen;
  button.setAttribute('aria-expanded', String(state.historyOpen));
  button.textContent = state.historyOpen ? 'Hide history' : 'Show history';
  $('#history-body').hidden = !state.historyOpen;
  if (state.historyOpen && !state.historyLoaded) await loadHistoryPage();
});

$('#history-more').addEventListener('click', (event) => {
  busy(event.currentTarget, 'Loading…', () => loadHistoryPage(oldestHistoryId()));
});

async function loadHistoryPage(beforeId) {
  const query = beforeId && beforeId !== Infinity ? `&before_id=${beforeId}` : '';
  try {
    const page = await api('GET', `/api/executions/recent?limit=${PAGE_SIZE}${query}`);
    for (const execution of page) state.history.set(execution.id, summarize(execution));
    state.historyLoaded = true;
    state.historyDone = page.length < PAGE_SIZE;
    for (const execution of page) upsert(execution);
    render();
  } catch (error) {
    toast(error.message, { error: true });
  }
}

/** After the tab was hidden: take in runs that started (and maybe ended) meanwhile. */
async function loadHistoryHead() {
  try {
    for (const execution of await api('GET', `/api/executions/recent?limit=${PAGE_SIZE}`)) upsert(execution);
  } catch {
    // the live indicator already says the server is unreachable
  }
}

// --- task flows -----------------------------------------------------------------------------------

async function loadFlows() {
  try {
    state.flows = await api('GET', '/api/task_flows');
    renderFlows();
  } catch (error) {
    toast(error.message, { error: true });
  }
}

function renderFlows() {
  syncList($('#flows'), state.flows, () => fromTemplate('tpl-flow'), (row, flow) => {
    field(row, 'name').textContent = flow.call_name;
    field(row, 'agent').textContent = `Agent ${flow.agent}`;
    field(row, 'count').textContent = plural(flow.prompts.length, 'prompt');
    field(row, 'description').textContent = flow.description;
    for (const button of row.querySelectorAll('[data-act]')) {
      button.setAttribute('aria-label', `${VERBS[button.dataset.act]} ${flow.call_name}`);
    }
  });
  $('#flows-empty').hidden = state.flows.length > 0;
}

$('#flows').addEventListener('click', (event) => {
  const button = event.target.closest('[data-act]');
  if (!button) return;
  const flow = state.flows.find((f) => String(f.id) === button.closest('li').dataset.key);
  if (!flow) return;
  if (button.dataset.act === 'run') runFlow(button, flow);
  else if (button.dataset.act === 'edit') openEditor(flow);
  else if (button.dataset.act === 'delete') deleteFlow(flow);
});

function runFlow(button, flow) {
  busy(button, 'Starting…', async () => {
    const started = await api('POST', `/api/task_flows/${flow.id}/run`, undefined, { 'Idempotency-Key': newKey() });
    toast(`Started ${flow.call_name} #${started.execution_id}.`);
    await refreshExecution(started.execution_id);
  });
}

async function deleteFlow(flow) {
  const sure = await confirmDialog(`Delete “${flow.call_name}”?`, 'Its Prefect deployment is removed too. The history of its runs is kept.', 'Delete');
  if (!sure) return;
  try {
    await api('DELETE', `/api/task_flows/${flow.id}`);
    toast(`Deleted ${flow.call_name}.`);
    if (state.editing && state.editing.id === flow.id) closeEditor();
  } catch (error) {
    toast(error.message, { error: true });
  }
  await loadFlows();
}

// --- task flow editor ------------------------------------------------------------------------------

const form = $('#flow-form');
const promptList = $('#flow-prompts');

async function loadAgents() {
  try {
    const answer = await api('GET', '/api/agents');
    state.agents = answer.agents.map((agent) => agent.id);
    state.defaultAgent = answer.default;
    state.agentsError = null;
  } catch (error) {
    state.agents = [];
    state.agentsError = error.message;
  }
}

function fillAgents(selected) {
  const select = $('#flow-agent');
  const names = [...new Set([...state.agents, state.defaultAgent, selected].filter(Boolean))];
  select.replaceChildren(
    ...names.map((name) => {
      const option = document.createElement('option');
      option.value = name;
      option.textContent = name === state.defaultAgent ? `${name} (default)` : name;
      return option;
    }),
  );
  select.value = selected || state.defaultAgent;
  const note = $('#flow-agent-note');
  note.hidden = !state.agentsError;
  note.textContent = state.agentsError ? `The agent list could not be loaded: ${state.agentsError}` : '';
}

async function openEditor(flow) {
  state.editing = flow ? { ...flow } : null;
  $('#flow-form-title').textContent = flow ? `Edit ${flow.call_name}` : 'New task flow';
  $('#flow-name').value = flow ? flow.call_name : '';
  $('#flow-description').value = flow ? flow.description : '';
  promptList.replaceChildren();
  for (const prompt of flow ? flow.prompts : ['']) addPrompt(prompt);
  showFormError($('#flow-error'), '');
  form.hidden = false;
  if (!state.agents.length) await loadAgents();
  fillAgents(flow ? flow.agent : state.defaultAgent);
  $('#flow-name').focus();
}

function closeEditor() {
  form.hidden = true;
  state.editing = null;
}

function addPrompt(value = '') {
  const item = fromTemplate('tpl-prompt');
  $('textarea', item).value = value;
  promptList.append(item);
  numberPrompts();
  return item;
}

function numberPrompts() {
  const items = [...promptList.children];
  items.forEach((item, index) => {
    const n = index + 1;
    const area = $('textarea', item);
    area.id = `prompt-${n}`;
    const label = field(item, 'label');
    label.htmlFor = area.id;
    label.textContent = `Prompt ${n}`;
    const [up, down, remove] = item.querySelectorAll('.icon-btn');
    up.setAttribute('aria-label', `Move prompt ${n} up`);
    down.setAttribute('aria-label', `Move prompt ${n} down`);
    remove.setAttribute('aria-label', `Remove prompt ${n}`);
    up.disabled = index === 0;
    down.disabled = index === items.length - 1;
    remove.disabled = items.length === 1;
  });
}

promptList.addEventListener('click', (event) => {
  const button = event.target.closest('[data-act]');
  if (!button) return;
  const item = button.closest('li');
  const act = button.dataset.act;
  if (act === 'up' && item.previousElementSibling) promptList.insertBefore(item, item.previousElementSibling);
  else if (act === 'down' && item.nextElementSibling) promptList.insertBefore(item.nextElementSibling, item);
  else if (act === 'remove') {
    const next = item.nextElementSibling || item.previousElementSibling;
    item.remove();
    numberPrompts();
    if (next) $('textarea', next).focus();
    return;
  }
  numberPrompts();
  // Keep the focus on the button that moved, or on its textarea when it cannot move further.
  if (button.disabled) $('textarea', item).focus();
  else button.focus();
});

$('#add-prompt').addEventListener('click', () => $('textarea', addPrompt()).focus());
$('#new-flow').addEventListener('click', () => openEditor(null));
$('#flow-cancel').addEventListener('click', closeEditor);
form.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') closeEditor();
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const errorBox = $('#flow-error');
  const reload = $('[data-act="reload"]', errorBox);
  reload.hidden = true;
  const body = {
    call_name: $('#flow-name').value.trim(),
    agent: $('#flow-agent').value,
    description: $('#flow-description').value,
    prompts: [...promptList.querySelectorAll('textarea')].map((area) => area.value),
  };
  const problem = !body.call_name ? 'Give the task flow a name.' : body.prompts.some((p) => !p.trim()) ? 'Fill in every prompt, or remove the empty ones.' : '';
  if (problem) return showFormError(errorBox, problem);
  const editing = state.editing;
  const save = $('#flow-save');
  save.disabled = true;
  save.textContent = 'Saving…';
  try {
    const saved = editing
      ? await api('PUT', `/api/task_flows/${editing.id}`, { ...body, version: editing.version })
      : await api('POST', '/api/task_flows', body);
    closeEditor();
    toast(`Saved ${saved.call_name}.`);
    await loadFlows();
  } catch (error) {
    let message = error.message;
    if (editing && error.status === 409 && (await changedElsewhere(editing))) {
      message = 'This task flow was changed by someone else since you opened it. Reload it to see their version (your changes here will be lost), then edit again.';
      reload.hidden = false;
    } else if (editing && error.status === 404) {
      message = 'This task flow was deleted by someone else.';
    }
    showFormError(errorBox, message);
  } finally {
    save.disabled = false;
    save.textContent = 'Save';
  }
});

async function changedElsewhere(editing) {
  try {
    const current = await api('GET', `/api/task_flows/${editing.id}`);
    return current.version !== editing.version;
  } catch {
    return false;
  }
}

$('#flow-error').addEventListener('click', async (event) => {
  if (!event.target.closest('[data-act="reload"]') || !state.editing) return;
  try {
    openEditor(await api('GET', `/api/task_flows/${state.editing.id}`));
  } catch (error) {
    showFormError($('#flow-error'), error.message);
  }
});

// --- memories ----------------------------------------------------------------------------------------

async function loadMemories() {
  try {
    state.memories = await api('GET', '/api/memories');
    renderMemories();
  } catch (error) {
    toast(error.message, { error: true });
  }
}

function renderMemories() {
  syncList($('#memories'), state.memories, () => fromTemplate('tpl-memory'), (item, memory) => {
    field(item, 'content').textContent = memory.content;
    const created = `Added ${formatStart(memory.created_at)}`;
    field(item, 'meta').textContent = memory.updated_at !== memory.created_at ? `${created} · edited ${formatStart(memory.updated_at)}` : created;
    const area = $('textarea', item);
    area.id = `memory-${memory.id}`;
    field(item, 'edit-label').htmlFor = area.id;
    for (const button of item.querySelectorAll('[data-act]')) {
      button.setAttribute('aria-label', `${VERBS[button.dataset.act]} memory ${memory.id}`);
    }
  });
  $('#memories-empty').hidden = state.memories.length > 0;
}

function setMemoryEditing(item, editing) {
  $('.memory-edit', item).hidden = !editing;
  field(item, 'content').hidden = editing;
  for (const act of ['edit', 'delete']) $(`[data-act="${act}"]`, item).hidden = editing;
  for (const act of ['save', 'cancel-edit']) $(`[data-act="${act}"]`, item).hidden = !editing;
}

$('#memories').addEventListener('click', async (event) => {
  const button = event.target.closest('[data-act]');
  if (!button) return;
  const item = button.closest('li');
  const memory = state.memories.find((m) => String(m.id) === item.dataset.key);
  if (!memory) return;
  const act = button.dataset.act;
  if (act === 'edit') {
    $('textarea', item).value = memory.content;
    showFormError($('.form-error', item), '');
    setMemoryEditing(item, true);
    $('textarea', item).focus();
  } else if (act === 'cancel-edit') {
    setMemoryEditing(item, false);
    $('[data-act="edit"]', item).focus();
  } else if (act === 'save') {
    const content = $('textarea', item).value.trim();
    if (!content) return showFormError($('.form-error', item), 'A memory cannot be empty; delete it instead.');
    button.disabled = true;
    try {
      await api('PUT', `/api/memories/${memory.id}`, { content });
      setMemoryEditing(item, false);
      toast('Memory saved.');
      await loadMemories();
    } catch (error) {
      showFormError($('.form-error', item), error.message);
    } finally {
      button.disabled = false;
    }
  } else if (act === 'delete') {
    if (!(await confirmDialog('Delete this memory?', memory.content.slice(0, 200), 'Delete'))) return;
    try {
      await api('DELETE', `/api/memories/${memory.id}`);
      toast('Memory deleted.');
    } catch (error) {
      toast(error.message, { error: true });
    }
    await loadMemories();
  }
});

$('#memory-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const area = $('#memory-new');
  const errorBox = $('#memory-error');
  const content = area.value.trim();
  if (!content) return showFormError(errorBox, 'Write the memory first.');
  const button = $('button[type="submit"]', event.currentTarget);
  button.disabled = true;
  try {
    await api('POST', '/api/memories', { content });
    area.value = '';
    showFormError(errorBox, '');
    toast('Memory added.');
    await loadMemories();
  } catch (error) {
    showFormError(errorBox, error.message);
  } finally {
    button.disabled = false;
  }
});

// --- tabs --------------------------------------------------------------------------------------------

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab, focus = false) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute('aria-selected', String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute('aria-controls')).hidden = !selected;
  }
  if (focus) tab.focus();
  const hash = tab.id === 'tab-memories' ? '#memories' : '';
  if (location.hash !== hash) history.replaceState(null, '', hash || location.pathname);
  if (tab.id === 'tab-memories') loadMemories();
}

for (const tab of tabs) {
  tab.addEventListener('click', () => selectTab(tab));
  tab.addEventListener('keydown', (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    selectTab(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length], true);
  });
}

// --- start ---------------------------------------------------------------------------------------------

if (location.hash === '#memories') selectTab($('#tab-memories'));
setLive('connecting');
loadFlows();
loadAgents();
connect();
