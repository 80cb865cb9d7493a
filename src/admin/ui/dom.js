// The console's tools: calls to the admin API (token, JSON, POST that passes
// the CSRF rules) and DOM building. Text is only ever set as text nodes, never
// parsed as HTML: event bodies and errors come from the outside world.

const TOKEN_KEY = 'hookrelay.admin-token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The API refused the token (or none was given). */
export class Unauthorized extends Error {}

/** No answer from the admin API (hookrelay stopped, or the network). */
export class Unreachable extends Error {}

/** GET (or POST with `{post: true}`) an admin API path; the parsed answer. */
export async function api(path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  // A header cannot carry it (fetch would fail as if the API were down).
  if (/[\x00-\x1f\x7f]/.test(t)) throw new Unauthorized('the token holds a character a header cannot carry (an invisible one, pasted with it?)');
  // Pasted with an invisible character (a zero-width space, a byte order mark): say so rather than send it.
  if (/[\x80-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]/.test(t)) throw new Unauthorized('the token holds an invisible character (pasted with it?)');
  // Sent as its UTF-8 bytes, as the CLI and curl send it (fetch sends each
  // character of a header value as one byte, and refuses those above U+00FF).
  if (t) headers.Authorization = 'Bearer ' + String.fromCharCode(...new TextEncoder().encode(t));
  // A stalled connection (a dead tunnel) must not hold the page for ever:
  // automatic refreshes wait for the one running.
  const init = { headers, credentials: 'omit', cache: 'no-store', signal: AbortSignal.timeout(60000) };
  if (opts.post) {
    // The API refuses state changes without a JSON content type (a form cannot send one).
    init.method = 'POST';
    headers['Content-Type'] = 'application/json';
    init.body = '{}';
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    if (e && e.name === 'TimeoutError') throw new Unreachable(`The admin API (${location.origin}) did not answer within 60 s.`);
    throw new Unreachable(`The admin API (${location.origin}) is unreachable: is hookrelay running?`);
  }
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    // Not JSON: the status says enough.
  }
  const msg = (body && body.error) || r.status + ' ' + r.statusText;
  // 429: this address sent too many wrong tokens (the page's own refused
  // one, or anything else behind the same address, a proxy's). The right
  // token is never refused, so the page asks for it: the form is the way out.
  if (r.status === 401 || r.status === 429) throw new Unauthorized(msg);
  if (!r.ok) throw new Error(msg);
  return body;
}

/** The characters that reorder text shown around them (embeddings, overrides,
 * isolates, and the invisible marks LRM, RLM, ALM): a task id or error
 * holding one showed other text than it holds ("abc\u202Egnp.exe" read
 * "abcexe.png", "id \u200F12 34\u200F" read "id 34 12"). Text shows each as
 * `⟨U+202E⟩`. So too every invisible character (Unicode's default ignorable
 * code points: zero-width space, word joiner, soft hyphen, invisible
 * operators, tag characters, …): "job-42\u200B" read "job-42" (console
 * reviews, stops 66 and 79). Those with a part in shaping a character before
 * them (joiners, variation selectors, the tags of a flag) are left to do it
 * after a visible character that is not ASCII (an emoji, a script that
 * joins), also in a run of them; after ASCII, an invisible character, or
 * first, they only hide. */
const SHAPING = '\\u200C\\u200D\\uFE00-\\uFE0F\\u{E0020}-\\u{E007F}\\u{E0100}-\\u{E01EF}';
const HIDDEN = `(?![${SHAPING}])[\\p{Default_Ignorable_Code_Point}\\p{Bidi_Control}]`;
const BIDI_CONTROLS = new RegExp(
  `(?<=(?:^|[\\x00-\\x7F]|${HIDDEN})[${SHAPING}]*)[${SHAPING}]|${HIDDEN}`,
  'gu',
);

/** `text` as the console shows it: bidi controls named, not obeyed. */
export function shownText(text) {
  return String(text).replace(BIDI_CONTROLS, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase()}⟩`);
}

/** An element with attributes (`on…` = listeners) and children (strings become
 * text, bidi controls named: {@link shownText}). */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : shownText(c));
  }
  return e;
}

/** A table: `cols` are header texts, each row `{attrs, cells}` (cells: nodes or text). */
export function table(id, cols, rows, empty) {
  if (rows.length === 0) return el('p', { class: 'empty', id: id + '-empty' }, empty);
  return el(
    'table',
    { id },
    el('thead', {}, el('tr', {}, cols.map((c) => el('th', {}, c)))),
    el('tbody', {}, rows.map((r) => el('tr', r.attrs, r.cells.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c)))))),
  );
}

/** A cell with a class, for values tests and styles look up. */
export function td(cls, ...content) {
  return el('td', { class: cls }, ...content);
}

/** A coloured state word (delivered, dead, open, ...). */
export function badge(state) {
  return el('span', { class: 'badge state-' + String(state).replace(/[^a-z_-]/gi, '') }, state === null ? '–' : state);
}

/** Seconds as "1h 2m", "3m 4s", "5s". */
export function age(secs) {
  if (secs === null || secs === undefined) return '–';
  const s = Math.floor(secs);
  if (s >= 86400) return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  if (s >= 3600) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  if (s >= 60) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  return s + 's';
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i === 0 ? v : v.toFixed(1)) + ' ' + units[i];
}

/** Any JSON value as nested definition lists (status, task state, certificates). */
export function kv(value) {
  if (value === null || value === undefined) return '–';
  if (Array.isArray(value)) {
    if (value.length === 0) return '–';
    return el('ul', { class: 'kv-list' }, value.map((v) => el('li', {}, kv(v))));
  }
  if (typeof value === 'object') {
    return el('dl', { class: 'kv' }, Object.entries(value).map(([k, v]) => [el('dt', {}, k), el('dd', {}, kv(v))]));
  }
  return String(value);
}

/** A link to an event's page. */
export function eventLink(id) {
  return el('a', { href: '#/events/' + encodeURIComponent(id), class: 'event-link' }, id);
}
