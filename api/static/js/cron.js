// A cron expression in words, as the schedule form and the task-flow list show it:
// "0 9 * * 1-5" -> "weekdays at 09:00". What it cannot put in words it quotes as it is.

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAY_NAMES = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const MONTH_NAMES = Object.fromEntries(MONTHS.map((m, i) => [m.slice(0, 3).toLowerCase(), i + 1]));
const MACROS = {
  '@hourly': '0 * * * *',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@weekly': '0 0 * * 0',
  '@monthly': '0 0 1 * *',
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
};

const isNumber = (value) => /^\d+$/.test(value);
const pad = (n) => String(n).padStart(2, '0');
const listWords = (items) => (items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`);

/** A field's values as numbers ("1-5" -> [1..5], "1,3" -> [1, 3]), or null if it has steps
 * or anything else this reader does not put in words. */
function values(field, names = {}, { sundayIsSeven = false } = {}) {
  const out = [];
  for (const part of field.toLowerCase().split(',')) {
    const [from, to] = part.split('-').map((v) => (v in names ? String(names[v]) : v));
    if (!isNumber(from) || (to !== undefined && !isNumber(to))) return null;
    const start = Number(from);
    const end = to === undefined ? start : Number(to);
    if (end < start) return null;
    for (let n = start; n <= end; n += 1) out.push(sundayIsSeven && n === 7 ? 0 : n);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function timeWords(minute, hour) {
  if (minute === '*' && hour === '*') return 'every minute';
  const step = /^\*\/(\d+)$/;
  if (step.test(minute) && hour === '*') return `every ${minute.match(step)[1]} minutes`;
  if (!isNumber(minute)) return null;
  if (hour === '*') return minute === '0' ? 'every hour' : `every hour at minute ${Number(minute)}`;
  if (step.test(hour)) return `every ${hour.match(step)[1]} hours at minute ${Number(minute)}`;
  const hours = values(hour);
  if (!hours || hours.some((h) => h > 23)) return null;
  const range = /^(\d+)-(\d+)$/.exec(hour);
  if (range && hours.length > 2) return `every hour from ${pad(range[1])}:${pad(minute)} to ${pad(range[2])}:${pad(minute)}`;
  return `at ${listWords(hours.map((h) => `${pad(h)}:${pad(minute)}`))}`;
}

function dayWords(dom, month, dow) {
  const parts = [];
  if (dow !== '*') {
    const days = values(dow, DAY_NAMES, { sundayIsSeven: true });
    if (!days || days.some((d) => d > 6)) return null;
    if (days.join() === '1,2,3,4,5') parts.push('weekdays');
    else if (days.join() === '0,6') parts.push('weekends');
    else parts.push(`on ${listWords(days.map((d) => `${DAYS[d]}s`))}`);
  }
  if (dom !== '*') {
    const dates = values(dom);
    if (!dates || dates.some((d) => d < 1 || d > 31)) return null;
    parts.push(`on day ${listWords(dates.map(String))} of the month`);
  }
  if (month !== '*') {
    const months = values(month, MONTH_NAMES);
    if (!months || months.some((m) => m < 1 || m > 12)) return null;
    parts.push(`in ${listWords(months.map((m) => MONTHS[m - 1]))}`);
  }
  return parts.length ? parts.join(' ') : 'every day';
}

/** The cron in words, with its time zone: "weekdays at 09:00, Europe/Berlin". */
export function describeCron(cron, timezone = 'UTC') {
  const expression = (cron || '').trim().split(/\s+/).join(' ');
  const fields = (MACROS[expression.toLowerCase()] || expression).split(' ');
  if (fields.length !== 5) return `cron “${expression}”, ${timezone}`;
  const [minute, hour, dom, month, dow] = fields;
  const time = timeWords(minute, hour);
  const days = dayWords(dom, month, dow);
  if (!time || !days) return `cron “${expression}”, ${timezone}`;
  // "every 15 minutes" reads better without "every day"; "weekdays at 09:00" puts days first.
  const words = days === 'every day' && time.startsWith('every') ? time : `${days} ${time}`;
  return `${words}, ${timezone}`;
}
