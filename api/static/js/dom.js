// Small helpers to put data into the page, always as text (textContent), never as HTML.

import { formatFull } from './format.js';

// What the buttons say (their accessible names add what they act on).
export const VERBS = { run: 'Run', edit: 'Edit', schedule: 'Schedule', delete: 'Delete', save: 'Save', 'cancel-edit': 'Cancel' };

export const $ = (selector, root = document) => root.querySelector(selector);
export const field = (root, name) => root.querySelector(`[data-f="${name}"]`);

export function setTime(el, iso) {
  el.dateTime = iso;
  el.title = formatFull(iso);
}

export function setBadge(el, status) {
  el.className = `${el.className.replace(/\bs-\w+/g, '').trim()} s-${status}`;
  el.textContent = status;
}

export function text(el, value) {
  el.classList.remove('placeholder');
  el.textContent = value;
}

export function placeholder(el, value) {
  el.classList.add('placeholder');
  el.textContent = value;
}

/** Reorder, add and remove the children of `list` to match `items` (keyed by id), keeping
 * the elements that stay, so focus and scroll positions survive live updates. */
export function syncList(list, items, create, update) {
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

export function fromTemplate(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}
