// The two tabs, Task flows and Memories (arrow keys move between them; #memories in the
// address opens the second).

import { $ } from './dom.js';
import { loadMemories } from './memories.js';

function tabList() {
  return [...document.querySelectorAll('[role="tab"]')];
}

function selectTab(tab, focus = false) {
  for (const other of tabList()) {
    const selected = other === tab;
    other.setAttribute('aria-selected', String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute('aria-controls')).hidden = !selected;
  }
  if (focus) tab.focus();
  const hash = tab.id === 'tab-memories' ? '#memories' : '';
  if (location.hash !== hash) history.replaceState(null, '', hash || location.pathname);
  if (tab.id === 'tab-memories') loadMemories();
}

export function initTabs() {
  const tabs = tabList();
  for (const tab of tabs) {
    tab.addEventListener('click', () => selectTab(tab));
    tab.addEventListener('keydown', (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      selectTab(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length], true);
    });
  }
  if (location.hash === '#memories') selectTab($('#tab-memories'));
}
