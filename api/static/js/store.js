// The page's one state, and the one way to redraw after changing it: `changed()` asks for a
// redraw and every view registered with `onChange` redraws once, in the next frame.

export const ACTIVE = new Set(['queued', 'running']);
export const RETRYABLE = new Set(['failed', 'cancelled']);
// How long a run that ended keeps its card (counted while the tab is visible).
export const ENDED_CARD_MS = 10000;

export const state = {
  agents: [],
  defaultAgent: 'default',
  agentsError: null,
  flows: [],
  schedules: new Map(), // flow id -> its schedule as Prefect has it
  active: new Map(), // id -> execution summary, queued or running
  watched: new Set(), // ids whose end the page announces: shown running, or started here
  ended: new Map(), // id -> {execution, until}: a run that just ended, still on its card
  history: new Map(), // id -> execution summary, every execution shown in History
  latest: new Map(), // id -> the newest summary taken in, so an older read never wins (bounded)
  historyOpen: false,
  historyLoaded: false,
  historyDone: false,
  expanded: new Set(),
  details: new Map(), // id -> full execution (with prompt_results)
  partials: new Map(), // id -> {index, attempt, text}: the answer the agent is writing
  memories: [],
  editing: null, // the task flow being edited, or null for a new one
};

const views = [];
let redrawQueued = false;

/** Register a function that draws part of the page from `state`. */
export function onChange(view) {
  views.push(view);
}

/** Redraw the views once in the next frame, however often this is called before it. */
export function changed() {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => {
    redrawQueued = false;
    for (const view of views) view();
  });
}
