// What the page knows about executions: it takes in newer states from the stream, from
// polling and from responses, and keeps `state.active`, `state.history`, `state.partials`
// and `state.details` consistent. Drawing them is runs.js's and history.js's job.
//
// The running cards draw execution summaries exactly as the server sends them (the stream's
// events, GET /api/executions/summaries): the page never derives one from a full execution.
// History rows need only the fields every execution object has.

import { api } from './api.js';
import { setLive, toast } from './notices.js';
import { ACTIVE, ENDED_CARD_MS, changed, state } from './store.js';

function isStale(execution, known) {
  return Boolean(known) && Date.parse(execution.updated_at) < Date.parse(known.updated_at);
}

/** Whether History shows this execution: it is loaded, and the execution is in the pages
 * read so far (or newer than all of them). */
function inHistory(id) {
  return state.historyLoaded && (state.history.has(id) || id > oldestHistoryId() || state.historyDone);
}

// Enough for every run a page shows at once; the oldest entries go first.
const LATEST_MAX = 1000;

/** The newest summary of this execution the page has taken in, from any source. */
function newestKnown(id) {
  return state.latest.get(id) || state.active.get(id) || state.history.get(id) || state.ended.get(id)?.execution;
}

function remember(execution) {
  state.latest.delete(execution.id); // re-inserted last: the Map keeps insertion order
  state.latest.set(execution.id, execution);
  if (state.latest.size > LATEST_MAX) state.latest.delete(state.latest.keys().next().value);
}

/** Take in a newer state of an execution: an execution summary sent by the server. */
export function upsert(execution) {
  const id = execution.id;
  // A run can end before the answer to its POST (or an older poll) arrives: that older
  // "queued" must not bring back a second, running card.
  const known = newestKnown(id);
  if (isStale(execution, known)) return;
  remember(execution);
  if (ACTIVE.has(execution.status)) {
    state.ended.delete(id); // resumed (Prefect's Retry of this execution): one card, running
    state.active.set(id, execution);
    state.watched.add(id);
  } else {
    state.active.delete(id);
    if (state.watched.delete(id) || state.ended.has(id)) announceEnd(execution);
  }
  const partial = state.partials.get(id);
  if (partial && (partial.index < execution.current_prompt_index || execution.status !== 'running')) {
    state.partials.delete(id);
  }
  if (inHistory(id)) state.history.set(id, execution);
  if (state.expanded.has(id) && (!known || known.results_count !== execution.results_count || known.status !== execution.status)) {
    loadDetails(id);
  }
  changed();
}

/** Take in executions read for History: History rows only (a running card waits for the
 * execution's summary, which the stream or the next poll brings). History reads summaries
 * (GET /api/executions/recent?results=false) and one whole execution when a row is opened
 * (loadDetails); prompts and results that come along anyway are dropped here. */
export function addHistoryRows(executions, { page = false } = {}) {
  for (const { prompts, prompt_results: results, ...execution } of executions) {
    const id = execution.id;
    if (!page && !inHistory(id)) continue;
    // A run that ended while this page was read (the stream said so first) keeps how it ended.
    const known = newestKnown(id);
    const newest = isStale(execution, known) || (known && known.updated_at === execution.updated_at) ? known : execution;
    state.history.set(id, newest);
    remember(newest);
  }
  changed();
}

/** Keep the card of a run that ended, saying how; the clock starts when someone can see it
 * (a run that ended while the tab was hidden is announced when it comes back). */
function announceEnd(execution) {
  const previous = state.ended.get(execution.id);
  state.ended.set(execution.id, { execution, until: previous ? previous.until : null });
}

/** Announce this run's end on its card, even if it ends before the page saw it running. */
export function watch(id) {
  if (!state.ended.has(id)) state.watched.add(id);
}

export function dismissEnded(id) {
  if (state.ended.delete(id)) changed();
}

/** Once a second while visible: start the clocks of new ended cards, retire old ones. */
export function tickEnded(now = Date.now()) {
  for (const [id, ended] of state.ended) {
    if (ended.until === null) ended.until = now + ENDED_CARD_MS;
    else if (now >= ended.until) dismissEnded(id);
  }
}

export function oldestHistoryId() {
  let oldest = Infinity;
  for (const id of state.history.keys()) oldest = Math.min(oldest, id);
  return oldest;
}

/** A snapshot lists every active execution (and the ones asked for): anything we thought
 * active that it does not list has ended, so read that one again. */
export function applySnapshot(executions) {
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
  changed();
}

/** A piece of the answer being written: `delta` goes at character `offset`. */
export function applyPartial({ id, index, attempt, offset, delta }) {
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
  changed();
}

/** Read the summaries of the active executions (and of `ids`): what a snapshot carries. */
export async function readSummaries(ids = [], { active = true } = {}) {
  const query = new URLSearchParams({ active: String(active) });
  if (ids.length) query.set('ids', ids.join(','));
  return (await api('GET', `/api/executions/summaries?${query}`)).executions;
}

/** Read one execution again (it ended, or it was just started). */
export async function refreshExecution(id) {
  try {
    for (const execution of await readSummaries([id], { active: false })) upsert(execution);
  } catch {
    setLive('offline');
  }
}

const detailsLoading = new Map();

/** Read an execution's prompt results; one request at a time per execution, and one more
 * after it when something changed meanwhile. */
export async function loadDetails(id) {
  if (detailsLoading.has(id)) {
    detailsLoading.set(id, true);
    return;
  }
  detailsLoading.set(id, false);
  try {
    state.details.set(id, await api('GET', `/api/executions/${id}`));
  } catch (error) {
    toast(error.message, { error: true });
  } finally {
    const again = detailsLoading.get(id);
    detailsLoading.delete(id);
    if (again) loadDetails(id);
    changed();
  }
}
