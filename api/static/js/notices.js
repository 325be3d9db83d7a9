// What the page tells the user besides the data: toasts, form errors, busy buttons, the
// confirmation and token dialogs, and the live indicator in the top bar.

import { $, field } from './dom.js';

const TOKEN_KEY = 'taskflows-token';

export function toast(message, { error = false } = {}) {
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

export function showFormError(box, message) {
  field(box, 'text').textContent = message;
  box.hidden = !message;
}

/** Run `action` with `button` disabled and showing `busyLabel`; errors become a toast. */
export async function busy(button, busyLabel, action) {
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

export function confirmDialog(title, text, confirmLabel) {
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

/** The API token the user gave, kept in this tab for this session only. */
export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function askForToken() {
  const dialog = $('#token-dialog');
  if (dialog.open) return;
  $('#token-input').value = savedToken() || '';
  dialog.returnValue = '';
  dialog.showModal();
}

export function initTokenDialog({ onSaved }) {
  $('#token-dialog').addEventListener('close', (event) => {
    if (event.target.returnValue !== 'save') return;
    const token = $('#token-input').value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    onSaved();
  });
}

const LIVE_LABELS = { live: 'Live', polling: 'Polling every 2 s', paused: 'Paused', offline: 'Offline', connecting: 'Connecting…' };

/** Say how the page gets its updates: live, polling, paused, offline or connecting. */
export function setLive(mode) {
  const el = $('#live');
  el.dataset.mode = mode;
  el.textContent = LIVE_LABELS[mode];
}
