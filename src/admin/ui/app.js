// The console's shell: which page the URL fragment names (#/events,
// #/events/ID, #/dead-letters, #/subscribers, #/tasks, #/status), refreshing it every few
// seconds (pausable), asking for the admin token when the API wants one, and
// replays and media retries (POST, then a message and a refresh).

import { api, el, setToken, token, Unauthorized } from './dom.js';
import { forgetFilters, pages } from './pages.js';

const REFRESH_MS = 2500;
/** How often a page whose answer can no longer change by itself (an event
 * delivered or dead everywhere, its media final) is asked again: for a
 * replay from elsewhere. It was every 2.5 s, the whole event each time (its
 * body up to `server.max_body`; console review, stop 61). */
const SETTLED_MS = 30000;
/** How long after a replay asked here a settled page is asked at the usual pace. */
const AFTER_REPLAY_MS = 15000;
const $ = (id) => document.getElementById(id);

/** The page being shown: `{page, arg, content, last}`; replaced on navigation. */
let current = null;
/** Whether the flash shows why the last refresh failed (a good one clears it). */
let loadFailed = false;

/** The page the URL fragment names; `bad` when an event id cannot be decoded. */
function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const name = parts[0] || 'events';
  if (name === 'events' && parts[1]) {
    try {
      return { name: 'event', arg: decodeURIComponent(parts[1]) };
    } catch (_) {
      return { name: 'event', arg: null, bad: parts[1] };
    }
  }
  return { name: pages[name] ? name : 'events', arg: null };
}

function flash(msg, isError) {
  const f = $('flash');
  f.hidden = !msg;
  f.textContent = msg || '';
  f.className = isError ? 'error' : 'ok';
  loadFailed = false;
}

/** Take the page's answers off the screen (the token is gone or refused). */
function clearShown() {
  if (!current) return;
  current.content.replaceChildren();
  current.last = null;
  $('updated').textContent = '';
}

function showLogin(show, msg) {
  $('login').hidden = !show;
  if (show) {
    clearShown();
    flash('');
    if (msg) $('login-msg').textContent = 'The admin API refused: ' + msg + '. Enter the admin token (admin.token in the config).';
  }
  $('forget').hidden = !token();
}

/** Replays asked: the same button clicked again while its request is out,
 * or within `REPLAY_HOLD_MS` of the click (a double-click, whose second
 * click came after a fast subscriber had the first replay: two deliveries,
 * console review, stop 61), asks nothing more. */
const replaying = new Set();
const REPLAY_HOLD_MS = 1000;

const ctx = {
  refresh: () => refresh(),
  async replay(path, what) {
    if (replaying.has(path)) return;
    replaying.add(path);
    const held = new Promise((r) => setTimeout(r, REPLAY_HOLD_MS));
    try {
      const r = await api(path, { post: true });
      const list = (k) => (r[k] || []).join(', ');
      if (r.requeued !== undefined) flash(`Replayed ${what}: ${r.requeued} requeued.` + (r.verdicts_left ? ` ${r.verdicts_left} left dead: held by verify = "fetch" on a route that no longer verifies (replay an event itself to send it).` : ''));
      else if (r.retried !== undefined) flash(`Archiving ${what} again: ${r.retried} URL(s) queued; replay the event once they are final to send the new result.`);
      else {
        const said = [];
        if (list('queued')) said.push(`queued for ${list('queued')}`);
        if (list('already_pending')) said.push(`already pending for ${list('already_pending')}`);
        if (list('filtered')) said.push(`not sent to ${list('filtered')} (its filter does not match)`);
        flash(said.length ? `Replay of ${what}: ${said.join('; ')}.` : `Nothing to replay for ${what}.`);
      }
    } catch (e) {
      if (e instanceof Unauthorized) showLogin(true, e.message);
      else flash(`Replay of ${what} failed: ${e.message}`, true);
    } finally {
      held.then(() => replaying.delete(path));
    }
    if (current) current.activeUntil = Date.now() + AFTER_REPLAY_MS;
    await refresh();
  },
};

function navigate() {
  const { name, arg, bad } = route();
  const page = pages[name];
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === (name === 'event' ? 'events' : name));
  }
  const controls = document.createElement('div');
  controls.className = 'page-controls';
  const content = document.createElement('div');
  content.id = 'content';
  const h2 = document.createElement('h2');
  h2.textContent = page.title;
  $('main').replaceChildren(h2, controls, content);
  document.title = page.title + ' · hookrelay';
  flash('');
  if (bad !== undefined) {
    // Nothing to load: say so instead of leaving the last page up.
    current = null;
    content.append(el('p', { class: 'error', id: 'bad-link' }, `This link names no event: "${bad}" is not a valid event id (broken percent-encoding).`));
    return Promise.resolve();
  }
  current = { page, arg, content, last: null };
  if (page.setup) page.setup(controls, arg, ctx);
  return refresh();
}

/** How many loads have started: only the newest one's answer is shown. */
let loads = 0;

// An automatic refresh does not redraw a list under a row's button the
// pointer is on or the keyboard has reached: rows moved under it (a new dead
// letter on top) and the click replayed another event, and a redraw sent the
// focus back to the top of the page (console review, stop 66). Drawn once
// the button is let go. Only a list's rows move so; a button focused by a
// mouse click (`:focus` without `:focus-visible`) holds nothing, or the page
// stayed held until the next click elsewhere (change review).
function heldByUser(content) {
  return content.querySelector('tr button:hover, tr button:focus-visible') !== null;
}

async function refresh(auto = false) {
  const shown = current;
  if (!shown) return;
  // Answers may come back out of order (a search typed letter by letter, a
  // slow scan): an older question's late answer must not replace a newer one.
  const mine = ++loads;
  const stale = () => current !== shown || mine !== loads;
  try {
    const data = await shown.page.load(shown.arg);
    if (stale()) return;
    const settled = !!(shown.page.settled && shown.page.settled(data));
    if (settled && !shown.settledAt) shown.settledAt = Date.now();
    if (!settled) shown.settledAt = 0;
    const text = JSON.stringify(data);
    // Unchanged answers leave the DOM alone (no flicker, buttons stay put).
    // An answer counts as shown once it is drawn: one that failed to draw is
    // drawn (and its error said) again, not skipped under a fresh "updated".
    if (text !== shown.last && auto && heldByUser(shown.content)) {
      $('updated').textContent = 'newer data held while a button of the list is pointed at or focused';
      if (loadFailed) flash('');
      // Asked again at the usual pace: drawn soon after the button is let go.
      shown.settledAt = 0;
      return;
    }
    if (text !== shown.last) {
      let drawn;
      try {
        drawn = shown.page.render(data, shown.arg, ctx);
      } catch (e) {
        throw new Error(`cannot show this answer: ${e.message}`);
      }
      shown.content.replaceChildren(drawn);
      shown.last = text;
    }
    showLogin(false);
    // The API answers again: the error that said it did not is over.
    if (loadFailed) flash('');
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.dataset.loaded = 'yes';
  } catch (e) {
    if (stale()) return;
    // Not settled while the answer cannot be had: the next one comes at the usual pace.
    shown.settledAt = 0;
    if (e instanceof Unauthorized) showLogin(true, e.message);
    else {
      flash(e.message, true);
      loadFailed = true;
    }
  }
}

function start() {
  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken($('token').value.trim());
    $('token').value = '';
    refresh();
  });
  $('forget').addEventListener('click', () => {
    setToken('');
    forgetFilters();
    clearShown();
    flash('');
    $('forget').hidden = true;
    // The page afresh: its controls too (a route filter keeps the route
    // names the API gave; stop 61's console review).
    navigate();
  });
  window.addEventListener('hashchange', navigate);
  // One automatic refresh at a time: a slow answer (a filtered search over
  // a large cluster store takes seconds) is not asked again while it runs.
  // A slow answer is also asked again less often: ten times its time
  // apart, a minute at most (a tab left on a filter that scans a large store,
  // 1 s an answer, kept 40 % of a core busy; resource review, stop 62). The
  // pause is the question's: another page or filter is asked at once.
  let busy = false;
  setInterval(async () => {
    // Not while the page asks for the token: each refresh would send the
    // refused one again, a wrong guess that keeps the address slowed down.
    if (busy || !$('auto').checked || document.hidden || !$('login').hidden) return;
    const shown = current;
    if (shown && Date.now() < (shown.notBefore || 0)) return;
    // Settled: asked again every SETTLED_MS, unless a replay was just asked.
    const now = Date.now();
    const quiet = shown && shown.settledAt && now >= (shown.activeUntil || 0);
    if (quiet && now - (shown.lastAsked || 0) < SETTLED_MS) return;
    if (shown) shown.lastAsked = now;
    busy = true;
    const began = Date.now();
    try { await refresh(true); } finally {
      busy = false;
      const took = Date.now() - began;
      if (shown) shown.notBefore = Date.now() + Math.min(60000, Math.max(0, 10 * took - REFRESH_MS));
    }
  }, REFRESH_MS);
  navigate();
}

start();
