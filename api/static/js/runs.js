// Running flows: one card per queued or running execution, with its progress, the prompt
// being answered, the answer as the agent writes it, and a Cancel button. When a run ends,
// its card stays for a while and says how: completed (and how long it took), failed (the
// error, and Retry) or cancelled; then it leaves for History.

import { api, newKey } from './api.js';
import { $, field, fromTemplate, placeholder, setBadge, syncList, text } from './dom.js';
import { dismissEnded, refreshExecution, watch } from './executions.js';
import { elapsedMs, formatClock, formatDuration } from './format.js';
import { busy, toast } from './notices.js';
import { ACTIVE, RETRYABLE, state } from './store.js';

export function renderRunning() {
  const ended = [...state.ended.values()].map(({ execution }) => execution);
  const runs = [...state.active.values(), ...ended].sort((a, b) => a.id - b.id);
  syncList($('#running'), runs, () => fromTemplate('tpl-run'), updateRunCard);
  $('#running-empty').hidden = runs.length > 0;
  const count = state.active.size;
  $('#running-count').textContent = count ? String(count) : '';
  document.title = count ? `(${count}) taskflows` : 'taskflows';
}

/** How the run ended, in one sentence. */
function outcome(execution) {
  if (execution.status === 'completed') return `Completed in ${formatDuration(elapsedMs(execution))}.`;
  if (execution.status === 'cancelled') return `Cancelled: ${execution.error || 'no reason given'}`;
  return execution.error || 'The run failed.';
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

  const ended = !ACTIVE.has(execution.status);
  const elapsed = field(card, 'elapsed');
  if (ended) delete elapsed.dataset.since; // the clock stops at the run's duration
  else elapsed.dataset.since = execution.status === 'queued' ? execution.queued_at : execution.started_at;
  elapsed.textContent = formatClock(elapsedMs(execution));
  const link = field(card, 'prefect');
  link.hidden = !execution.prefect_url;
  if (execution.prefect_url) link.href = execution.prefect_url;
  const label = `${execution.call_name} #${execution.id}`;
  const cancel = card.querySelector('[data-act="cancel"]');
  cancel.setAttribute('aria-label', `Cancel ${label}`);
  cancel.hidden = ended;

  card.querySelector('.run-body').hidden = ended;
  const said = field(card, 'outcome');
  said.hidden = !ended;
  said.className = `run-outcome o-${execution.status}`;
  said.textContent = ended ? outcome(execution) : '';
  said.setAttribute('role', ended && execution.status === 'failed' ? 'alert' : 'status');
  const retry = card.querySelector('[data-act="retry"]');
  retry.hidden = !(ended && RETRYABLE.has(execution.status));
  retry.setAttribute('aria-label', `Retry ${label}`);
  const dismiss = card.querySelector('[data-act="dismiss"]');
  dismiss.hidden = !ended;
  dismiss.setAttribute('aria-label', `Dismiss ${label}`);
}

/** The running clocks, once a second. */
export function tickRunning() {
  for (const el of document.querySelectorAll('#running time[data-since]')) {
    el.textContent = formatClock(Date.now() - Date.parse(el.dataset.since));
  }
}

export function initRunning() {
  $('#running').addEventListener('click', (event) => {
    const button = event.target.closest('[data-act]');
    if (!button) return;
    const id = Number(button.closest('li').dataset.key);
    if (button.dataset.act === 'cancel') {
      busy(button, 'Cancelling…', async () => {
        await api('POST', `/api/executions/${id}/cancel`);
        toast(`Cancelled #${id}.`);
        await refreshExecution(id);
      });
    } else if (button.dataset.act === 'retry') {
      busy(button, 'Retrying…', async () => {
        const started = await api('POST', `/api/executions/${id}/retry`, undefined, { 'Idempotency-Key': newKey() });
        toast(`Retrying #${id} as #${started.execution_id}.`);
        watch(started.execution_id);
        dismissEnded(id);
        await refreshExecution(started.execution_id);
      });
    } else if (button.dataset.act === 'dismiss') {
      dismissEnded(id);
    }
  });
}
