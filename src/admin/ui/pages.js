// The console's pages. Each has `title`, optional `setup(controls, arg, ctx)`
// (built once per visit: filters keep their focus across refreshes), `load(arg)`
// (the API answer) and `render(data, arg, ctx)` (a node; only called when the
// answer changed). `ctx.refresh()` reloads now, `ctx.replay(path, what)` POSTs.

import { api, el, table, td, badge, age, bytes, kv, eventLink } from './dom.js';
import { indentJson } from './indent.js';

const q = (params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) s.set(k, v);
  return s.toString();
};

// A route filter: "any route" and the configured routes (from /api/status).
// A chosen route is listed from the start (so the list shows the filter in
// force even while /api/status fails); `fill` adds the others on the page's
// first answer (the API may want the token first), one request at a time,
// asked again on the next answer while it fails.
function routeFilter(id, current, onchange) {
  const option = (r) => el('option', { value: r }, r);
  const select = el('select', { id, onchange }, el('option', { value: '' }, 'any route'), current ? option(current) : null);
  select.value = current;
  let pending = null;
  const fill = () =>
    (pending ??= api('/api/status').then(
      (s) => select.append(...(s.routes || []).filter((r) => r !== current).map(option)),
      () => {
        pending = null; // the page's own call says what is wrong
      },
    ));
  return { select, fill };
}

// A list the API cut at its limit says so, with a button to the rest.
const listNote = (id, text, ...buttons) => el('p', { class: 'list-note', id }, text, ...buttons);
const button = (id, label, onclick) => el('button', { type: 'button', id, onclick }, label);

// Events: filters route, status and a text search on the task id (server-side);
// `before` is the page: the newest, or those older than an event (`next_before`).
const filters = { route: '', status: '', task: '', before: '' };
/** Events a page lists. */
const EVENTS_PAGE = 100;
/** How long typing in a search field pauses before the search is asked. */
const SEARCH_PAUSE_MS = 300;
let eventsRoute = null;

// Which page of events this is, and the buttons to the others.
function eventsNote(data, ctx) {
  const go = (before) => () => {
    filters.before = before;
    ctx.refresh();
  };
  const newest = filters.before ? button('events-newest', '← newest', go('')) : null;
  const n = data.events.length;
  if (data.more && data.next_before && n === 0) {
    // The page's walk stopped before the log's oldest (10,000 events left
    // out; in cluster mode 10,000 messages a route) and found none.
    return listNote('events-note', 'none in this part of the log; older ones may match. ', newest, button('events-older', 'older →', go(data.next_before)));
  }
  if (data.more && data.next_before) {
    const which = filters.before ? `showing ${n} events older than ${filters.before}` : `showing the newest ${n} events`;
    // The walk stopped before the log's oldest: older ones may match.
    const older = data.cut ? 'older ones may match' : 'older ones match too';
    return listNote('events-note', `${which}; ${older}. `, newest, button('events-older', 'older →', go(data.next_before)));
  }
  return filters.before ? listNote('events-note', `showing the oldest ${n} events that match. `, newest) : null;
}

const events = {
  title: 'Events',
  setup(controls, _arg, ctx) {
    const onInput = (key) => (ev) => {
      filters[key] = ev.target.value.trim();
      filters.before = ''; // another filter: from the newest again
      ctx.refresh();
    };
    // A task id search scans the store: ask once typing pauses, not per key.
    let typing = 0;
    const onTyping = (key) => (ev) => {
      clearTimeout(typing);
      // Not once the field is gone (another page, Forget token: a search
      // typed just before it came back under the next user's eyes, unshown).
      typing = setTimeout(() => ev.target.isConnected && onInput(key)(ev), SEARCH_PAUSE_MS);
    };
    filters.before = '';
    eventsRoute = routeFilter('filter-route', filters.route, onInput('route'));
    const status = el(
      'select',
      { id: 'filter-status', onchange: onInput('status') },
      ['', 'pending', 'delivered', 'dead', 'undelivered'].map((s) => el('option', { value: s, selected: s === filters.status }, s || 'any status')),
    );
    controls.append(
      el('label', {}, 'Route ', eventsRoute.select),
      el('label', {}, 'Status ', status),
      el('label', {}, 'Task id ', el('input', { id: 'filter-task', type: 'search', value: filters.task, placeholder: 'part of a task id', oninput: onTyping('task') })),
    );
  },
  async load() {
    const route = eventsRoute; // this visit's, whatever a later visit sets
    const data = await api('/api/events?' + q({ limit: EVENTS_PAGE, ...filters }));
    await route.fill();
    return data;
  },
  render: (data, _arg, ctx) =>
    el(
      'div',
      {},
      table(
        'events-table',
        ['Event', 'Received', 'Route', 'Task id', 'Status', 'Size', 'Subscribers'],
        data.events.map((e) => ({
          attrs: { 'data-id': e.id },
          cells: [
            eventLink(e.id),
            e.received_at,
            e.route,
            td('task wrap', e.task_id || '–'),
            td('status', badge(e.status)),
            bytes(e.size),
            e.subscribers.map((s) => el('span', { class: 'sub-state' }, s.name + ' ', badge(s.state))),
          ],
        })),
        data.cut ? 'No events in this part of the log.' : 'No events match.',
      ),
      eventsNote(data, ctx),
    ),
};

function attempts(sub) {
  return table(
    'attempts-' + sub.name,
    ['#', 'At', 'Took', 'Status', 'Error'],
    sub.attempts.map((a) => ({
      attrs: { class: 'attempt' },
      cells: [String(a.attempt), a.at, a.duration_ms + ' ms', a.status === null ? '–' : String(a.status), td('wrap', a.error || '')],
    })),
    'No attempt yet.',
  );
}

function media(items) {
  return table(
    'media-table',
    ['URL', 'State', 'Stored at', 'SHA-256', 'Size', 'Type', 'Error'],
    items.map((m) => ({
      attrs: { class: 'media' },
      cells: [td('wrap', m.url), badge(m.state), td('wrap', m.location || '–'), m.sha256 || '–', bytes(m.size), m.content_type || '–', td('wrap', m.error || '')],
    })),
    'No media.',
  );
}

// Indented when it is JSON, its numbers and keys as sent; a body that is not
// UTF-8 comes as base64, and says so.
function body(e) {
  if (e.body_encoding === 'base64') {
    const size = Math.floor((e.body.length * 3) / 4) - (e.body.match(/=*$/)[0].length);
    return el(
      'div',
      {},
      el('p', { id: 'event-body-note' }, `Not UTF-8 text: shown as base64 (${bytes(size)} as received).`),
      el('pre', { id: 'event-body' }, e.body),
    );
  }
  return el('pre', { id: 'event-body' }, indentJson(e.body));
}

const event = {
  title: 'Event',
  load: (id) => api('/api/events/' + encodeURIComponent(id)),
  // Nothing left to happen by itself: every delivery and media file final,
  // and its task (if it has one) no longer waiting for a callback or a poll.
  settled: (e) =>
    e.subscribers.every((s) => s.state !== 'pending') &&
    (!Array.isArray(e.media) || e.media.every((m) => m.state !== 'pending')) &&
    (!e.task || ['called_back', 'recovered', 'gave_up'].includes(e.task.state)),
  render: (e, _id, ctx) =>
    el(
      'div',
      { id: 'event-detail', 'data-id': e.id },
      kv({
        id: e.id,
        route: e.route,
        'task id': e.task_id,
        status: e.status,
        received: e.received_at,
        source: e.source,
        origin: e.origin,
        'content type': e.content_type,
        'dedupe key from body hash': e.dedupe_fallback,
      }),
      e.task ? [el('h3', {}, 'Task'), el('div', { id: 'event-task' }, kv(e.task))] : null,
      Array.isArray(e.media)
        ? [
            el('h3', {}, 'Media'),
            media(e.media),
            e.media.some((m) => m.state === 'failed')
              ? el('button', { type: 'button', id: 'retry-media', onclick: () => ctx.replay(`/api/events/${encodeURIComponent(e.id)}/media/retry`, `the failed media of event ${e.id}`) }, 'Archive failed media again')
              : null,
          ]
        : null,
      el('h3', {}, 'Deliveries'),
      e.subscribers.map((s) =>
        el(
          'section',
          { class: 'subscriber', 'data-name': s.name },
          el(
            'h4',
            {},
            s.name + ' ',
            badge(s.state),
            ' ' + s.attempts_total + ' attempt(s) ',
            // Shown dead: replayed only while it still is (`only=dead`), as
            // a dead letter's row; the page may be older than a replay of
            // all that delivered it (admin review, stop 67).
            el('button', { type: 'button', class: 'replay', onclick: () => ctx.replay(`/api/events/${encodeURIComponent(e.id)}/replay?${q(s.state === 'dead' ? { subscriber: s.name, only: 'dead' } : { subscriber: s.name })}`, `event ${e.id} to ${s.name}`) }, 'Replay'),
          ),
          s.last_error ? el('p', { class: 'error' }, s.last_error) : null,
          // A hold a replay released: kept, as it holds the other subscribers.
          s.held_unverified && !(s.last_error || '').startsWith('unverified: ')
            ? el('p', { class: 'error' }, 'held as unverified before a replay released it: ' + s.held_unverified)
            : null,
          attempts(s),
        ),
      ),
      el('h3', {}, 'Body'),
      body(e),
      el('h3', {}, 'Headers'),
      table('headers-table', ['Name', 'Value'], e.headers.map(([k, v]) => ({ cells: [td('wrap', k), td('wrap', v)] })), 'No headers kept.'),
    ),
};

// Dead letters: the newest (the API lists them newest first, up to a limit),
// and per subscriber its real count (from /api/subscribers, not the page).
const deadLetters = {
  title: 'Dead letters',
  async load() {
    const [dead, subs] = await Promise.all([api('/api/dead-letters?limit=1000'), api('/api/subscribers')]);
    // Only what is shown: a change elsewhere (a backlog) need not redraw the page.
    const counts = subs.subscribers
      .filter((s) => s.dead_letters > 0)
      .map((s) => ({ name: s.name, removed: s.state === 'removed', dead_letters: s.dead_letters }));
    return { ...dead, subscribers: counts };
  },
  render(data, _arg, ctx) {
    const shown = data.dead_letters.length;
    const total = data.total ?? shown;
    // A removed subscriber's letters are kept, not replayed: no button that
    // can only fail (console review, stop 66).
    const removed = new Set(data.subscribers.filter((s) => s.removed).map((s) => s.name));
    const replayAll = (name) => ctx.replay('/api/dead-letters/replay?' + q({ subscriber: name }), `every dead letter of ${name}`);
    return el(
      'div',
      {},
      el('p', { id: 'dead-count' }, shown < total ? `Showing the newest ${shown} of ${total} dead letters.` : `${total} dead letter${total === 1 ? '' : 's'}.`),
      el(
        'div',
        { id: 'dead-summary' },
        data.subscribers.map((s) =>
          s.removed
            ? el('span', { class: 'muted', 'data-subscriber': s.name }, `${s.dead_letters} of ${s.name} (removed from the config: kept, not replayed)`)
            : el('button', { type: 'button', class: 'replay-all', 'data-subscriber': s.name, onclick: () => replayAll(s.name) }, `Replay all ${s.dead_letters} of ${s.name}`),
        ),
      ),
      table(
        'dead-table',
        ['Event', 'Subscriber', 'Gave up at', 'Attempts', 'Last error', ''],
        data.dead_letters.map((d) => ({
          attrs: { 'data-event': d.event, 'data-subscriber': d.subscriber },
          cells: [
            eventLink(d.event),
            d.subscriber,
            d.at,
            String(d.attempts),
            td('wrap', d.last_error || ''),
            // `only=dead`: a row shown a while ago replays nothing a replay
            // of all delivered meanwhile (it was sent twice: console review,
            // stop 66).
            removed.has(d.subscriber)
              ? el('span', { class: 'muted' }, 'kept (removed)')
              : el('button', { type: 'button', class: 'replay', onclick: () => ctx.replay(`/api/events/${encodeURIComponent(d.event)}/replay?${q({ subscriber: d.subscriber, only: 'dead' })}`, `event ${d.event} to ${d.subscriber}`) }, 'Replay'),
          ],
        })),
        'No dead letters.',
      ),
    );
  },
};

// A pull subscriber's last pull: how long ago and from where, and whether
// a forwarder is waiting in a long-poll now; blank for push subscribers.
function lastPull(s) {
  if (s.kind !== 'pull') return '–';
  const waiting = s.waiting_pulls > 0 ? ` (${s.waiting_pulls} waiting now)` : '';
  if (s.seconds_since_pull === null || s.seconds_since_pull === undefined) return 'never' + waiting;
  const from = s.last_pull_from ? ` from ${s.last_pull_from}` : '';
  return `${age(s.seconds_since_pull)} ago${from}${waiting}`;
}

const subscribers = {
  title: 'Subscribers',
  load: () => api('/api/subscribers'),
  render: (data) =>
    table(
      'subscribers-table',
      ['Name', 'Route', 'Kind', 'URL', 'Circuit', 'Backlog', 'In flight', 'Leased', 'Last pull', 'Oldest pending', 'Dead letters'],
      data.subscribers.map((s) => ({
        attrs: { 'data-name': s.name },
        cells: [
          s.name,
          s.route || '–',
          s.kind || '–',
          td('url wrap', s.url || '–'),
          td('circuit', badge(s.state)),
          td('backlog', String(s.queue_depth)),
          td('in-flight', String(s.in_flight)),
          td('leased', String(s.leased ?? 0)),
          td('last-pull', lastPull(s)),
          td('oldest', age(s.oldest_pending_seconds)),
          td('dead', String(s.dead_letters)),
        ],
      })),
      'No subscribers.',
    ),
};

// Expected tasks: filters route and state (server-side).
const taskFilters = { route: '', state: '' };
let tasksRoute = null;
// How many tasks the page asks for: 200 more each time the user asks.
const TASKS_STEP = 200;
// The API's largest `limit` (tasks have no `before`: past it, filters narrow the list).
const TASKS_MAX = 10000;
let taskLimit = TASKS_STEP;

const tasks = {
  title: 'Expected tasks',
  setup(controls, _arg, ctx) {
    const onInput = (key) => (ev) => {
      taskFilters[key] = ev.target.value.trim();
      ctx.refresh();
    };
    taskLimit = TASKS_STEP;
    tasksRoute = routeFilter('filter-task-route', taskFilters.route, onInput('route'));
    const state = el(
      'select',
      { id: 'filter-task-state', onchange: onInput('state') },
      ['', 'waiting', 'polling', 'called_back', 'recovered', 'gave_up'].map((s) =>
        el('option', { value: s, selected: s === taskFilters.state }, s || 'any state'),
      ),
    );
    controls.append(
      el('label', {}, 'Route ', tasksRoute.select),
      el('label', {}, 'State ', state),
    );
  },
  async load() {
    const route = tasksRoute; // this visit's, whatever a later visit sets
    const data = await api('/api/tasks?' + q({ limit: taskLimit, ...taskFilters }));
    await route.fill();
    return data;
  },
  render: (data, _arg, ctx) =>
    el(
      'div',
      {},
      table(
        'tasks-table',
        ['Task id', 'Route', 'State', 'Registered', 'Next poll', 'Polls', 'Provider state', 'Last error', 'Event'],
        data.tasks.map((t) => ({
          attrs: { 'data-task': t.task_id },
          cells: [
            td('task wrap', t.task_id),
            t.route,
            td('state', badge(t.state)),
            t.registered_at,
            t.next_poll_at || '–',
            String(t.polls),
            td('wrap', t.provider_state || '–'),
            td('wrap', t.last_error || ''),
            t.event ? eventLink(t.event) : '–',
          ],
        })),
        'No expected tasks match.',
      ),
      !data.more
        ? null
        : taskLimit >= TASKS_MAX
          ? listNote(
              'tasks-note',
              `showing the newest ${data.tasks.length} tasks, the most this page lists; more match: narrow the list with the filters above.`,
            )
          : listNote(
              'tasks-note',
              `showing the newest ${data.tasks.length} tasks; more match. `,
              button('tasks-more', `show ${TASKS_STEP} more`, () => {
                taskLimit = Math.min(taskLimit + TASKS_STEP, TASKS_MAX);
                ctx.refresh();
              }),
            ),
    ),
};

// The store's figures: size, and in cluster mode its message count (the
// API has `messages` then); either is null while the store cannot be read
// (NATS away), which the page says rather than showing a blank.
function store(st) {
  const known = (v, show) => (v === null || v === undefined ? 'unknown (the store cannot be read right now)' : show(v));
  const out = { backend: st.backend, path: st.path, size: known(st.size_bytes, bytes) };
  if ('messages' in st) out.messages = known(st.messages, (n) => n.toLocaleString('en-US'));
  return out;
}

const status = {
  title: 'Status',
  load: () => api('/api/status'),
  render: (s) =>
    el(
      'div',
      { id: 'status' },
      kv({
        version: s.version,
        ready: s.ready ? true : `no: ${s.not_ready_because || 'not yet'}`,
        'started at': s.started_at,
        uptime: age(s.uptime_seconds),
        store: store(s.store),
        ...(s.last_reload && s.last_reload.refused_because
          ? { 'last reload': `refused at ${s.last_reload.at} (the running configuration stayed): ${s.last_reload.refused_because}` }
          : {}),
      }),
      el('h3', {}, 'Listeners'),
      table('listeners-table', ['Address', 'TLS'], s.listeners.map((l) => ({ cells: [l.addr, String(l.tls)] })), 'No public listener.'),
      el('h3', {}, 'Certificates'),
      s.certificates.length ? kv(s.certificates) : el('p', { class: 'empty' }, 'No TLS on the public listeners.'),
    ),
};

export const pages = { events, event, 'dead-letters': deadLetters, subscribers, tasks, status };

/** The filters chosen (routes, states, task id text) go with the token:
 * the next person at the screen starts from none (they stayed; stop 62). */
export function forgetFilters() {
  Object.assign(filters, { route: '', status: '', task: '', before: '' });
  Object.assign(taskFilters, { route: '', state: '' });
}
