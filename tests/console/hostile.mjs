// The console without an admin token, and the attacks that a missing token
// would otherwise let through, in a real headless Chromium (driven by
// tests/console.rs). A page on another origin (served here, on localhost)
// tries to replay dead letters with an auto-submitted form and with fetch,
// and to embed an admin answer (Cross-Origin-Resource-Policy refuses it);
// on the console itself, a string set as HTML is refused (Trusted Types);
// a host name resolved to the admin address (DNS rebinding, simulated with
// Chromium's --host-resolver-rules) tries to read the API. Env: ADMIN_URL
// (http://127.0.0.1:PORT), EVENT_IDS, DEAD_SUB, CHROMIUM. Prints one line per
// step; exits non-zero with the reason on failure.

import http from 'node:http';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const ADMIN = env('ADMIN_URL');
const port = new URL(ADMIN).port;
const deadSub = env('DEAD_SUB');
const step = (msg) => console.log('step: ' + msg);

// The attacker's page: a form (text/plain, the one body type a form can make
// look like JSON) and two fetches, all aimed at the dead-letter replay.
const target = `${ADMIN}/api/dead-letters/replay?subscriber=${encodeURIComponent(deadSub)}`;
const hostile = `<!doctype html><title>hostile</title>
<form id="f" method="POST" action="${target}" enctype="text/plain"><input name='{"x":"' value='"}'></form>
<script>
  window.results = {};
  const t = ${JSON.stringify(target)};
  fetch(t, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{}' })
    .then((r) => (window.results.noCors = 'sent ' + r.type), (e) => (window.results.noCors = 'error ' + e.message));
  fetch(t, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    .then((r) => (window.results.json = 'answer ' + r.status), (e) => (window.results.json = 'blocked ' + e.message));
  // Embedding an admin answer (as <img> of an archived file would be).
  const css = document.createElement('link');
  css.rel = 'stylesheet';
  css.href = ${JSON.stringify(ADMIN + '/ui/style.css')};
  css.onload = () => (window.results.embed = 'loaded');
  css.onerror = () => (window.results.embed = 'blocked');
  document.head.append(css);
</script>`;
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(hostile);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const hostilePort = server.address().port;

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  // rebound.test resolves to the admin address, as a rebinding DNS server would make it.
  args: ['--no-sandbox', '--host-resolver-rules=MAP rebound.test 127.0.0.1'],
});
let failed = null;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);

  // Without a token configured the console works without asking for one.
  await page.goto(`${ADMIN}/ui#/dead-letters`);
  await page.waitForSelector(`#dead-table tr[data-subscriber="${deadSub}"]`);
  if (await page.locator('#login').isVisible()) throw new Error('asked for a token that is not configured');
  step('console works without a token');
  // Callback content is only ever set as text: an HTML sink is refused
  // outright (Trusted Types), as a slip in the page's code would be.
  const sink = await page.evaluate(() => {
    try {
      document.getElementById('main').insertAdjacentHTML('beforeend', '<img src=x id=injected>');
      return 'parsed';
    } catch (e) {
      return 'refused: ' + e.name;
    }
  });
  if (!sink.startsWith('refused') || (await page.$('#injected'))) throw new Error(`the console parsed a string as HTML: ${sink}`);
  step(`an HTML sink on the console is ${sink}`);

  // The attacks, from http://localhost:PORT (another site than 127.0.0.1).
  const statuses = [];
  page.on('response', (r) => r.url().startsWith(target) && statuses.push(r.status()));
  await page.goto(`http://localhost:${hostilePort}/`);
  await page.waitForFunction(() => window.results && window.results.noCors && window.results.json && window.results.embed);
  const results = await page.evaluate(() => window.results);
  step(`hostile fetches: ${JSON.stringify(results)}`);
  if (!results.json.startsWith('blocked')) throw new Error(`a cross-site JSON fetch got an answer: ${results.json}`);
  if (results.embed !== 'blocked') throw new Error(`another site's page embedded an admin answer: ${results.embed}`);
  await Promise.all([page.waitForURL(target), page.evaluate(() => document.getElementById('f').submit())]);
  const formAnswer = await page.textContent('body');
  step(`hostile form answered: ${formAnswer.replace(/\s+/g, ' ')}`);
  if (!formAnswer.includes('cross-site request refused')) throw new Error('the cross-site form was not refused');
  if (statuses.length === 0 || statuses.some((s) => s < 400)) throw new Error(`replay answers to the hostile page: ${statuses}`);
  step(`replay answers seen by the browser: ${statuses.join(', ')}`);

  // DNS rebinding: the same address under a hostile name.
  for (const path of ['/api/dead-letters', '/ui']) {
    const r = await page.goto(`http://rebound.test:${port}${path}`);
    if (r.status() !== 403) throw new Error(`rebound.test${path} answered ${r.status()}`);
  }
  step('rebound host name refused (403)');

  // Nothing was replayed: the dead letters are all still there.
  await page.goto(`${ADMIN}/ui#/dead-letters`);
  for (const id of env('EVENT_IDS').split(',')) {
    await page.waitForSelector(`#dead-table tr[data-event="${id}"][data-subscriber="${deadSub}"]`);
  }
  step('every dead letter is still listed');
  console.log('HOSTILE OK');
} catch (e) {
  failed = e;
} finally {
  await browser.close();
  server.close();
}
if (failed) {
  console.error('hostile test failed: ' + failed.message);
  process.exit(1);
}
