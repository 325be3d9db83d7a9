// Memories: notes sent to the agent before every prompt; added, edited in place, deleted.

import { api } from './api.js';
import { $, VERBS, field, fromTemplate, syncList } from './dom.js';
import { formatStart } from './format.js';
import { confirmDialog, showFormError, toast } from './notices.js';
import { state } from './store.js';

export async function loadMemories() {
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

async function onMemoryButton(event) {
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
}

async function addMemory(event) {
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
}

export function initMemories() {
  $('#memories').addEventListener('click', onMemoryButton);
  $('#memory-form').addEventListener('submit', addMemory);
}
