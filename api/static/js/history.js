// History: every execution, newest first, read a page at a time once the section is
// opened; a row opens to show each prompt's result, and failed or cancelled runs can be
// retried.

import { api, newKey } from './api.js';
import { $, field, fromTemplate, setBadge, setTime, syncList } from './dom.js';
import { addHistoryRows, loadDetails, oldestHistoryId, refreshExecution, watch } from './executions.js';
import { elapsedMs, formatDuration, formatStart, plural } from './format.js';
import { busy, toast } from './notices.js';
import { RETRYABLE, changed, state } from './store.js';

const PAGE_SIZE = 20;

export function renderHistory() {
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
  // The prompt the result answers, as sent; an execution taken over from the old system
  // lists its task flow's prompts as they are now, which may have changed since.
  field(item, 'prompt').textContent = result?.prompt ?? prompt;
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

/** The durations of running rows, once a second. */
export function tickHistory() {
  for (const row of document.querySelectorAll('#history [data-f="duration"][data-running="true"]')) {
    const execution = state.history.get(Number(row.closest('li').dataset.key));
    if (execution) row.textContent = formatDuration(elapsedMs(execution));
  }
}

async function loadHistoryPage(beforeId) {
  const query = beforeId && beforeId !== Infinity ? `&before_id=${beforeId}` : '';
  try {
    const page = await api('GET', `/api/executions/recent?results=false&limit=${PAGE_SIZE}${query}`);
    state.historyLoaded = true;
    state.historyDone = page.length < PAGE_SIZE;
    addHistoryRows(page, { page: true });
  } catch (error) {
    toast(error.message, { error: true });
  }
}

/** After the tab was hidden: take in runs that started (and maybe ended) meanwhile. */
export async function loadHistoryHead() {
  try {
    addHistoryRows(await api('GET', `/api/executions/recent?results=false&limit=${PAGE_SIZE}`));
  } catch {
    // the live indicator already says the server is unreachable
  }
}

async function setHistoryOpen(open) {
  state.historyOpen = open;
  const button = $('#history-toggle');
  button.setAttribute('aria-expanded', String(open));
  button.textContent = open ? 'Hide history' : 'Show history';
  $('#history-body').hidden = !open;
  if (open && !state.historyLoaded) await loadHistoryPage();
}

/** `/#execution-12` (the link in an alert): open History on that run, with its details. */
export async function openFromHash() {
  const match = /^#execution-(\d+)$/.exec(window.location.hash);
  if (!match) return;
  const id = Number(match[1]);
  await setHistoryOpen(true);
  if (!state.history.has(id)) {
    try {
      addHistoryRows([await api('GET', `/api/executions/${id}`)], { page: true });
    } catch (error) {
      toast(error.message, { error: true });
      return;
    }
  }
  state.expanded.add(id);
  loadDetails(id);
  changed();
  requestAnimationFrame(() => {
    const row = document.querySelector(`#history > li[data-key="${id}"]`);
    if (row) row.scrollIntoView({ block: 'center' });
  });
}

export function initHistory() {
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
      changed();
    } else if (button.dataset.act === 'retry') {
      busy(button, 'Retrying…', async () => {
        const started = await api('POST', `/api/executions/${id}/retry`, undefined, { 'Idempotency-Key': newKey() });
        toast(`Retrying #${id} as #${started.execution_id}.`);
        watch(started.execution_id);
        await refreshExecution(started.execution_id);
      });
    }
  });

  $('#history-toggle').addEventListener('click', () => setHistoryOpen(!state.historyOpen));
  window.addEventListener('hashchange', openFromHash);

  $('#history-more').addEventListener('click', (event) => {
    busy(event.currentTarget, 'Loading…', () => loadHistoryPage(oldestHistoryId()));
  });
}
