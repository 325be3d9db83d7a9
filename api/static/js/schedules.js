// Schedules on the page: per task flow, set, edit, switch off and remove a cron schedule
// (kept by Prefect on the task flow's deployment), with the cron read back in words and
// the next five runs. The task-flow list shows each flow's next run.

import { api } from './api.js';
import { $ } from './dom.js';
import { describeCron } from './cron.js';
import { showFormError, toast } from './notices.js';
import { state } from './store.js';

const form = () => $('#schedule-form');
let onChanged = () => {};
let editing = null; // the task flow whose schedule the form shows

/** Read every task flow's schedule (one request); the list shows them. */
export async function loadSchedules() {
  try {
    const schedules = await api('GET', '/api/schedules');
    state.schedules = new Map(schedules.map((schedule) => [schedule.flow_id, schedule]));
  } catch {
    state.schedules = new Map(); // Prefect unreachable: the list just shows no schedules
  }
}

/** A time in the schedule's own time zone: "Tue 2 Dec, 09:00". */
export function formatRunTime(iso, timezone) {
  const options = { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  try {
    return new Intl.DateTimeFormat(undefined, { ...options, timeZone: timezone }).format(new Date(iso));
  } catch {
    return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
  }
}

/** What the task-flow list says about a flow's schedule, or '' when it has none. */
export function scheduleSummary(flowId) {
  const schedule = state.schedules.get(flowId);
  if (!schedule) return '';
  const what = schedule.cron ? describeCron(schedule.cron, schedule.timezone) : `${schedule.kind} schedule, ${schedule.timezone}`;
  if (schedule.paused) return `Paused in Prefect · ${what}`;
  if (!schedule.enabled) return `Schedule off · ${what}`;
  const next = schedule.next_runs[0];
  return next ? `Next run ${formatRunTime(next, schedule.timezone)} · ${what}` : what;
}

function showWords() {
  const cron = $('#schedule-cron').value;
  $('#schedule-words').textContent = cron.trim() ? describeCron(cron, $('#schedule-tz').value.trim() || 'UTC') : '';
}

function showSchedule(schedule) {
  const list = $('#schedule-next');
  list.replaceChildren(
    ...(schedule ? schedule.next_runs : []).map((iso) => {
      const item = document.createElement('li');
      const time = document.createElement('time');
      time.dateTime = iso;
      time.textContent = formatRunTime(iso, schedule.timezone);
      item.append(time);
      return item;
    }),
  );
  const status = $('#schedule-status');
  if (!schedule) status.textContent = 'No schedule yet.';
  else if (schedule.paused) status.textContent = 'The deployment is paused in Prefect: nothing fires.';
  else if (!schedule.enabled) status.textContent = 'Switched off: nothing fires until it is switched on.';
  else status.textContent = schedule.next_runs.length ? 'Next runs:' : 'It never fires.';
  $('#schedule-remove').hidden = !schedule;
  $('#schedule-switch').hidden = !schedule;
  $('#schedule-switch').textContent = schedule && !schedule.enabled ? 'Switch on' : 'Switch off';
}

function fillTimezones() {
  const list = $('#schedule-tz-list');
  if (list.children.length || !Intl.supportedValuesOf) return;
  list.replaceChildren(
    ...Intl.supportedValuesOf('timeZone').map((zone) => {
      const option = document.createElement('option');
      option.value = zone;
      return option;
    }),
  );
}

/** Open the schedule form on a task flow. */
export async function openSchedule(flow) {
  editing = flow;
  fillTimezones();
  $('#schedule-title').textContent = `Schedule of ${flow.call_name}`;
  showFormError($('#schedule-error'), '');
  const known = state.schedules.get(flow.id);
  $('#schedule-cron').value = known && known.cron ? known.cron : '';
  $('#schedule-tz').value = known ? known.timezone : Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  showWords();
  showSchedule(known || null);
  form().hidden = false;
  $('#schedule-cron').focus();
}

function closeSchedule() {
  form().hidden = true;
  editing = null;
}

async function save(enabled) {
  const flow = editing;
  const body = { cron: $('#schedule-cron').value, timezone: $('#schedule-tz').value.trim() || 'UTC', enabled };
  try {
    const schedule = await api('PUT', `/api/task_flows/${flow.id}/schedule`, body);
    state.schedules.set(flow.id, schedule);
    showFormError($('#schedule-error'), '');
    showSchedule(schedule);
    toast(enabled ? `${flow.call_name} runs ${describeCron(schedule.cron, schedule.timezone)}.` : `${flow.call_name}'s schedule is off.`);
    onChanged();
  } catch (error) {
    showFormError($('#schedule-error'), error.message);
  }
}

async function remove() {
  const flow = editing;
  try {
    await api('DELETE', `/api/task_flows/${flow.id}/schedule`);
    state.schedules.delete(flow.id);
    toast(`${flow.call_name} is no longer scheduled.`);
    closeSchedule();
    onChanged();
  } catch (error) {
    showFormError($('#schedule-error'), error.message);
  }
}

export function initSchedules({ onSaved }) {
  onChanged = onSaved;
  $('#schedule-cron').addEventListener('input', showWords);
  $('#schedule-tz').addEventListener('input', showWords);
  form().addEventListener('submit', (event) => {
    event.preventDefault();
    const known = editing && state.schedules.get(editing.id);
    save(known ? known.enabled : true);
  });
  $('#schedule-switch').addEventListener('click', () => {
    const known = editing && state.schedules.get(editing.id);
    if (known) save(!known.enabled);
  });
  $('#schedule-remove').addEventListener('click', remove);
  $('#schedule-close').addEventListener('click', closeSchedule);
}
