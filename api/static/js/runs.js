// Running flows: one card per queued or running execution, with its progress, the prompt
// being answered, the answer as the agent writes it, and a Cancel button.

import { api } from './api.js';
import { $, field, fromTemplate, placeholder, setBadge, syncList, text } from './dom.js';
import { refreshExecution } from './executions.js';
import { elapsedMs, formatClock } from './format.js';
import { busy, toast } from './notices.js';
import { state } from './store.js';

export function renderRunning() {
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

/** The running clocks, once a second. */
export function tickRunning() {
  for (const el of document.querySelectorAll('#running time[data-since]')) {
    el.textContent = formatClock(Date.now() - Date.parse(el.dataset.since));
  }
}

export function initRunning() {
  $('#running').addEventListener('click', (event) => {
    const button = event.target.closest('[data-act="cancel"]');
    if (!button) return;
    const id = Number(button.closest('li').dataset.key);
    busy(button, 'Cancelling…', async () => {
      await api('POST', `/api/executions/${id}/cancel`);
      toast(`Cancelled #${id}.`);
      await refreshExecution(id);
    });
  });
}
