// The list of task flows, with Run, Edit and Delete on each.

import { api, newKey } from './api.js';
import { $, VERBS, field, fromTemplate, syncList } from './dom.js';
import { closeEditor, openEditor } from './editor.js';
import { refreshExecution, watch } from './executions.js';
import { plural } from './format.js';
import { busy, confirmDialog, toast } from './notices.js';
import { loadSchedules, openSchedule, scheduleSummary } from './schedules.js';
import { state } from './store.js';

export async function loadFlows() {
  try {
    const [flows] = await Promise.all([api('GET', '/api/task_flows'), loadSchedules()]);
    state.flows = flows;
    renderFlows();
  } catch (error) {
    toast(error.message, { error: true });
  }
}

export function renderFlows() {
  syncList($('#flows'), state.flows, () => fromTemplate('tpl-flow'), (row, flow) => {
    field(row, 'name').textContent = flow.call_name;
    field(row, 'agent').textContent = `Agent ${flow.agent}`;
    field(row, 'count').textContent = plural(flow.prompts.length, 'prompt');
    field(row, 'description').textContent = flow.description;
    field(row, 'schedule').textContent = scheduleSummary(flow.id);
    for (const button of row.querySelectorAll('[data-act]')) {
      button.setAttribute('aria-label', `${VERBS[button.dataset.act]} ${flow.call_name}`);
    }
  });
  $('#flows-empty').hidden = state.flows.length > 0;
}

function runFlow(button, flow) {
  busy(button, 'Starting…', async () => {
    const started = await api('POST', `/api/task_flows/${flow.id}/run`, undefined, { 'Idempotency-Key': newKey() });
    toast(`Started ${flow.call_name} #${started.execution_id}.`);
    watch(started.execution_id); // announce how it ends, even if that is at once
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

export function initFlows() {
  $('#flows').addEventListener('click', (event) => {
    const button = event.target.closest('[data-act]');
    if (!button) return;
    const flow = state.flows.find((f) => String(f.id) === button.closest('li').dataset.key);
    if (!flow) return;
    if (button.dataset.act === 'run') runFlow(button, flow);
    else if (button.dataset.act === 'edit') openEditor(flow);
    else if (button.dataset.act === 'schedule') openSchedule(flow);
    else if (button.dataset.act === 'delete') deleteFlow(flow);
  });
}
