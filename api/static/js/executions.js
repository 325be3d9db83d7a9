// What the page knows about executions: it takes in newer states from the stream, from
// polling and from responses, and keeps `state.active`, `state.history`, `state.partials`
// and `state.details` consistent. Drawing them is runs.js's and history.js's job.

import { api } from './api.js';
import { setLive, toast } from './notices.js';
import { ACTIVE, changed, state } from './store.js';

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
export function upsert(incoming) {
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
  changed();
}

/** Put a page of History in, as read (older pages come after the newer ones). */
export function addHistoryPage(executions) {
  for (const execution of executions) state.history.set(execution.id, summarize(execution));
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

/** Read one execution again (it ended, or it was just started). */
export async function refreshExecution(id) {
  try {
    upsert(await api('GET', `/api/executions/${id}`));
  } catch (error) {
    if (error.status !== 404) setLive('offline');
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
    const full = await api('GET', `/api/executions/${id}`);
    state.details.set(id, full);
    upsert(full);
  } catch (error) {
    toast(error.message, { error: true });
  } finally {
    const again = detailsLoading.get(id);
    detailsLoading.delete(id);
    if (again) loadDetails(id);
    changed();
  }
}
