// The task flow editor: name, agent, description and an ordered list of prompts. Saving an
// edit sends the version it started from, so a change made elsewhere meanwhile is refused
// and the editor offers to reload it.

import { api } from './api.js';
import { $, field, fromTemplate } from './dom.js';
import { showFormError, toast } from './notices.js';
import { state } from './store.js';

const form = () => $('#flow-form');
const promptList = () => $('#flow-prompts');

export async function loadAgents() {
  try {
    const answer = await api('GET', '/api/agents');
    state.agents = answer.agents;
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

/** Open the editor on `flow`, or on a new task flow when `flow` is null. */
export async function openEditor(flow) {
  state.editing = flow ? { ...flow } : null;
  $('#flow-form-title').textContent = flow ? `Edit ${flow.call_name}` : 'New task flow';
  $('#flow-name').value = flow ? flow.call_name : '';
  $('#flow-description').value = flow ? flow.description : '';
  promptList().replaceChildren();
  for (const prompt of flow ? flow.prompts : ['']) addPrompt(prompt);
  showFormError($('#flow-error'), '');
  form().hidden = false;
  if (!state.agents.length) await loadAgents();
  fillAgents(flow ? flow.agent : state.defaultAgent);
  $('#flow-name').focus();
}

export function closeEditor() {
  form().hidden = true;
  state.editing = null;
}

function addPrompt(value = '') {
  const item = fromTemplate('tpl-prompt');
  $('textarea', item).value = value;
  promptList().append(item);
  numberPrompts();
  return item;
}

function numberPrompts() {
  const items = [...promptList().children];
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

function onPromptButton(event) {
  const button = event.target.closest('[data-act]');
  if (!button) return;
  const list = promptList();
  const item = button.closest('li');
  const act = button.dataset.act;
  if (act === 'up' && item.previousElementSibling) list.insertBefore(item, item.previousElementSibling);
  else if (act === 'down' && item.nextElementSibling) list.insertBefore(item.nextElementSibling, item);
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
}

async function save(event, onSaved) {
  event.preventDefault();
  const errorBox = $('#flow-error');
  const reload = $('[data-act="reload"]', errorBox);
  reload.hidden = true;
  const body = {
    call_name: $('#flow-name').value.trim(),
    agent: $('#flow-agent').value,
    description: $('#flow-description').value,
    prompts: [...promptList().querySelectorAll('textarea')].map((area) => area.value),
  };
  const problem = !body.call_name ? 'Give the task flow a name.' : body.prompts.some((p) => !p.trim()) ? 'Fill in every prompt, or remove the empty ones.' : '';
  if (problem) return showFormError(errorBox, problem);
  const editing = state.editing;
  const button = $('#flow-save');
  button.disabled = true;
  button.textContent = 'Saving…';
  try {
    const saved = editing
      ? await api('PUT', `/api/task_flows/${editing.id}`, { ...body, version: editing.version })
      : await api('POST', '/api/task_flows', body);
    closeEditor();
    toast(`Saved ${saved.call_name}.`);
    await onSaved();
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
    button.disabled = false;
    button.textContent = 'Save';
  }
}

async function changedElsewhere(editing) {
  try {
    const current = await api('GET', `/api/task_flows/${editing.id}`);
    return current.version !== editing.version;
  } catch {
    return false;
  }
}

/** Wire the editor; `onSaved` runs after a task flow was saved (to read the list again). */
export function initEditor({ onSaved }) {
  promptList().addEventListener('click', onPromptButton);
  $('#add-prompt').addEventListener('click', () => $('textarea', addPrompt()).focus());
  $('#new-flow').addEventListener('click', () => openEditor(null));
  $('#flow-cancel').addEventListener('click', closeEditor);
  form().addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeEditor();
  });
  form().addEventListener('submit', (event) => save(event, onSaved));
  $('#flow-error').addEventListener('click', async (event) => {
    if (!event.target.closest('[data-act="reload"]') || !state.editing) return;
    try {
      openEditor(await api('GET', `/api/task_flows/${state.editing.id}`));
    } catch (error) {
      showFormError($('#flow-error'), error.message);
    }
  });
}
