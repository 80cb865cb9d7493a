// The console in a real headless Chromium, driven by tests/console.rs (which
// started the daemon and its subscribers and sent the first callbacks).
// Env: ADMIN_URL, ADMIN_TOKEN, INGEST_URL (a callback URL with its token),
// EVENT_IDS (comma-separated, the test's callbacks), TASK / TASK_EVENT (a task
// id and its event), DEAD_SUB (the subscriber whose deliveries died), DOWN_SUB
// (the one that is down), EXPECTED_TASK (a registered task id), CHROMIUM (the
// browser), SCREENSHOTS (a directory, or empty). Prints one line per step; exits non-zero with the reason on failure.

import { env, inChromium } from './page.mjs';
const ADMIN = env('ADMIN_URL');
const ids = env('EVENT_IDS').split(',');
const [task, taskEvent, deadSub, downSub] = ['TASK', 'TASK_EVENT', 'DEAD_SUB', 'DOWN_SUB'].map(env);
const shots = process.env.SCREENSHOTS || '';

const step = (msg) => console.log('step: ' + msg);

async function shot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: `${shots}/console-${name}.png`, fullPage: true });
  step(`screenshot ${name}`);
}

/** Wait until `fn` (run in the page) returns true, or fail with `what`. */
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: 15000, polling: 100 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

await inChromium('console', async (page, errors) => {

  // The API wants the token: the page asks for it, then lists the test's events.
  await page.goto(`${ADMIN}/ui`);
  await page.waitForSelector('#login:not([hidden])');
  step('asked for the admin token');
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  for (const id of ids) await page.waitForSelector(`#events-table tr[data-id="${id}"]`);
  if (await page.locator('#login').isVisible()) throw new Error('login form still shown');
  if ((await page.inputValue('#token')) !== '') throw new Error('the token stays in the form');
  step(`lists the ${ids.length} events`);
  // The 401 that made the page ask for the token is the only error allowed.
  errors.length = 0;
  await shot(page, 'events');

  // Text search on the task id (server-side).
  await page.fill('#filter-task', task);
  await until(page, `only ${taskEvent} listed for ${task}`, (id) => {
    const rows = [...document.querySelectorAll('#events-table tbody tr')];
    return rows.length === 1 && rows[0].dataset.id === id;
  }, taskEvent);
  step(`task search ${task} finds ${taskEvent} only`);
  await page.fill('#filter-task', '');
  // No event is delivered (each died for flaky): an empty list shows the
  // filter was asked for (the rows already shown were all dead, so waiting
  // for dead rows only could not fail).
  await page.selectOption('#filter-status', 'delivered');
  await page.waitForSelector('#events-table-empty');
  await page.selectOption('#filter-status', 'dead');
  await until(page, 'the status filter', (n) => {
    const rows = [...document.querySelectorAll('#events-table tbody tr td.status')];
    return rows.length === n && rows.every((td) => td.textContent === 'dead');
  }, ids.length);
  await page.selectOption('#filter-status', '');
  step('status filter shows dead events only');

  // The route filter lists the configured routes; choosing one lists its events only.
  await until(page, 'the route filter to list the configured routes', () =>
    JSON.stringify([...document.querySelectorAll('#filter-route option')].map((o) => o.value)) === JSON.stringify(['', 't', 'tasks']),
  );
  await page.selectOption('#filter-route', 'tasks');
  await page.waitForSelector('#events-table-empty');
  await page.selectOption('#filter-route', 't');
  await until(page, `the ${ids.length} events of route t`, (n) => {
    const rows = [...document.querySelectorAll('#events-table tbody tr')];
    return rows.length === n && rows.every((tr) => tr.children[2].textContent === 't');
  }, ids.length);
  await page.selectOption('#filter-route', '');
  step('route filter lists t and tasks and filters by route');

  // One event: its attempts per subscriber.
  await page.click(`#events-table tr[data-id="${taskEvent}"] a.event-link`);
  await page.waitForSelector(`#event-detail[data-id="${taskEvent}"]`);
  const dead = page.locator(`#event-detail .subscriber[data-name="${deadSub}"]`);
  await dead.locator('tr.attempt').first().waitFor();
  const deadAttempts = await dead.locator('tr.attempt').count();
  if (deadAttempts < 2) throw new Error(`${deadSub}: ${deadAttempts} attempts shown, expected 2`);
  const statuses = await dead.locator('tr.attempt td:nth-child(4)').allTextContents();
  if (!statuses.every((s) => s === '500')) throw new Error(`${deadSub} attempts: ${statuses}`);
  const okStatuses = await page.locator('#event-detail .subscriber[data-name="ok"] tr.attempt td:nth-child(4)').allTextContents();
  if (!okStatuses.includes('200')) throw new Error(`ok attempts: ${okStatuses}`);
  if (!(await page.textContent('#event-body')).includes(task)) throw new Error('the body is not shown');
  step(`event ${taskEvent} shows ${deadAttempts} attempts (500) to ${deadSub} and 200 to ok`);
  await shot(page, 'event');

  // Dead letters: replay one, then all of the subscriber.
  await page.click('#nav a[data-page="dead-letters"]');
  const row = `#dead-table tr[data-event="${taskEvent}"][data-subscriber="${deadSub}"]`;
  await page.waitForSelector(row);
  const before = await page.locator('#dead-table tbody tr').count();
  step(`${before} dead letters listed`);
  // The count and the replay-all button say how many the subscriber has.
  const replayAll = `#dead-summary button.replay-all[data-subscriber="${deadSub}"]`;
  await until(page, 'the counts of the dead letters', ([sel, sub, n]) =>
    document.querySelector(sel)?.textContent === `Replay all ${n} of ${sub}` &&
    document.querySelector('#dead-count')?.textContent === `${n} dead letters.`, [replayAll, deadSub, before]);
  await shot(page, 'dead-letters');
  // More than the page lists (the API's total is larger than its list): it says so.
  const deadList = (url) => url.pathname === '/api/dead-letters';
  await page.route(deadList, async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    await route.fulfill({ response, json: { ...json, total: json.total + 2000 } });
  });
  await until(page, 'the page to say it lists part of them', (n) =>
    document.querySelector('#dead-count')?.textContent === `Showing the newest ${n} of ${n + 2000} dead letters.`, before);
  await page.unroute(deadList);
  // A slow answer is not asked for again while it runs (automatic refreshes
  // piled up on a slow cluster search): answers held 6 s, 7 s of watching.
  let asked = 0;
  await page.route(deadList, async (route) => {
    asked += 1;
    await new Promise((r) => setTimeout(r, 6000));
    await route.continue().catch(() => {});
  });
  await page.waitForTimeout(7000);
  await page.unroute(deadList);
  if (asked > 1) throw new Error(`a slow dead-letter list was asked for ${asked} times in 7 s`);
  step(`a dead-letter list answering in 6 s was asked for ${asked} time(s) in 7 s`);
  step(`${await page.textContent('#dead-count')} (a larger total); replay all says ${await page.textContent(replayAll)}`);
  await page.click(`${row} button.replay`);
  await until(page, 'the replayed dead letter to leave the list', (sel) => !document.querySelector(sel), row);
  await page.waitForSelector('#flash.ok');
  const said = await page.textContent('#flash');
  // The answer's lists, named: queued, already pending, filtered out.
  if (!said.includes(`queued for ${deadSub}`)) throw new Error(`the replay's flash does not say where it was queued: ${said}`);
  step(`replayed ${taskEvent} to ${deadSub}: ${said}`);
  await page.click(replayAll);
  await page.waitForSelector('#dead-table-empty');
  step(`replayed all of ${deadSub}: ${await page.textContent('#flash')}`);

  // A subscriber that is down: its backlog grows on the page as callbacks arrive.
  await page.click('#nav a[data-page="subscribers"]');
  const backlog = `#subscribers-table tr[data-name="${downSub}"] td.backlog`;
  await page.waitForSelector(backlog);
  const start = Number(await page.textContent(backlog));
  for (let i = 0; i < 3; i++) {
    const r = await fetch(env('INGEST_URL'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 200, data: { task_id: `backlog-${i}` } }),
    });
    if (!r.ok) throw new Error(`callback ${i}: ${r.status}`);
  }
  // No navigation or click: the page refreshes by itself.
  await until(page, `${downSub}'s backlog to grow from ${start} to ${start + 3}`, ([sel, n]) => Number(document.querySelector(sel)?.textContent) >= n, [backlog, start + 3]);
  const oldest = await page.textContent(`#subscribers-table tr[data-name="${downSub}"] td.oldest`);
  step(`${downSub} backlog ${start} -> ${await page.textContent(backlog)} (oldest pending ${oldest}) without reloading`);
  await shot(page, 'subscribers');

  // Expected tasks: the registered one is waiting; the state filter hides it.
  const expected = env('EXPECTED_TASK');
  await page.click('#nav a[data-page="tasks"]');
  const taskRow = `#tasks-table tr[data-task="${expected}"]`;
  await page.waitForSelector(taskRow);
  const state = await page.textContent(`${taskRow} td.state`);
  if (state !== 'waiting') throw new Error(`task ${expected} shows ${state}, not waiting`);
  await shot(page, 'tasks');
  await page.selectOption('#filter-task-state', 'called_back');
  await until(page, 'the state filter to hide the waiting task', (sel) => !document.querySelector(sel), taskRow);
  await page.selectOption('#filter-task-state', '');
  await page.waitForSelector(taskRow);
  await until(page, 'the tasks route filter to list the configured routes', () =>
    JSON.stringify([...document.querySelectorAll('#filter-task-route option')].map((o) => o.value)) === JSON.stringify(['', 't', 'tasks']),
  );
  await page.selectOption('#filter-task-route', 't');
  await until(page, 'the route filter to hide the task of route tasks', (sel) => !document.querySelector(sel), taskRow);
  await page.selectOption('#filter-task-route', 'tasks');
  await page.waitForSelector(taskRow);
  await page.selectOption('#filter-task-route', '');
  step(`task ${expected} listed as waiting; the state and route filters work`);

  // The admin API goes away, then answers again: the page names what failed
  // (not fetch's "Failed to fetch"), and the error goes with the next good refresh.
  const apiCall = (url) => url.pathname.startsWith('/api/');
  await page.route(apiCall, (route) => route.abort('connectionrefused'));
  await until(page, 'the unreachable API to be named', () => {
    const f = document.querySelector('#flash');
    return !f.hidden && f.className === 'error' && f.textContent.includes('unreachable');
  });
  const downMsg = await page.textContent('#flash');
  if (downMsg.includes('Failed to fetch')) throw new Error(`raw fetch error shown: ${downMsg}`);
  await page.unroute(apiCall);
  await until(page, 'the error to go once the API answers', () => document.querySelector('#flash').hidden);
  step(`API down: "${downMsg}"; back: the message is gone`);

  // A token the API refuses now (rotated), then Forget token: the login form,
  // and the event it showed is gone from the screen.
  await page.click('#nav a[data-page="events"]');
  await page.click(`#events-table tr[data-id="${taskEvent}"] a.event-link`);
  await page.waitForSelector('#event-body');
  await page.evaluate(() => sessionStorage.setItem('hookrelay.admin-token', 'rotated-away'));
  await page.waitForSelector('#login:not([hidden])');
  if (await page.locator('#event-detail, #event-body').count()) throw new Error('the event stays shown under a refused token');
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#event-body');
  await page.click('#forget');
  await page.waitForSelector('#login:not([hidden])');
  if (await page.locator('#event-detail, #event-body').count()) throw new Error('the event stays shown after Forget token');
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#event-body');
  step('a refused token and Forget token take the event off the screen');

  // Forget token on a list: the route names its filter had from the API go
  // too (they stayed; stop 61's console review), and so do the route and
  // task id text chosen (they stayed; stop 62's).
  await page.click('#nav a[data-page="events"]');
  await until(page, 'the route filter filled', () => document.querySelectorAll('#filter-route option').length > 2);
  await page.selectOption('#filter-route', 't');
  await page.fill('#filter-task', env('TASK'));
  await until(page, 'the search to be shown', () => document.querySelectorAll('#events-table tbody tr').length === 1);
  await page.click('#forget');
  await page.waitForSelector('#login:not([hidden])');
  const left = await page.$$eval('#filter-route option', (o) => o.map((x) => x.value));
  if (left.some((v) => v !== '')) throw new Error(`route names stay after Forget token: ${left}`);
  const kept = await page.evaluate(() => [document.querySelector('#filter-route').value, document.querySelector('#filter-task').value]);
  if (kept.some((v) => v !== '')) throw new Error(`the filters chosen stay after Forget token: ${JSON.stringify(kept)}`);
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  await until(page, 'the route filter filled again', () => document.querySelectorAll('#filter-route option').length > 2);
  // A search typed just before Forget token (its 0.3 s pause not over) is
  // not asked afterwards, unshown (the change review, stop 63).
  await page.fill('#filter-task', 'no-such-task-typed-before-forget');
  await page.click('#forget');
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  await page.waitForTimeout(1500);
  await until(page, 'the unfiltered list', () => document.querySelectorAll('#events-table tbody tr').length > 1);
  step('Forget token takes the route names off the filter, and a search typed before it');

  // A malformed event link: a message, not the last page under a new address.
  await page.evaluate(() => {
    location.hash = '#/events/%E0%A4%A';
  });
  await page.waitForSelector('#bad-link');
  if (await page.locator('#event-detail').count()) throw new Error('the last event stays under a malformed link');
  step(await page.textContent('#bad-link'));
  // The refused and aborted requests above are logged by the browser; they were meant.
  errors.splice(0, errors.length, ...errors.filter((e) => !e.startsWith('Failed to load resource')));

  await page.click('#nav a[data-page="status"]');
  await page.waitForSelector('#status');
  step('status shows version ' + (await page.locator('#status dd').first().textContent()));
  await shot(page, 'status');

  // Pausing the refresh stops the API calls.
  await page.uncheck('#auto');
  let calls = 0;
  page.on('request', (r) => r.url().includes('/api/') && calls++);
  await page.waitForTimeout(3000);
  if (calls > 0) throw new Error(`${calls} API calls while auto-refresh was paused`);
  step('auto-refresh pauses');
}, { consoleErrors: true });
