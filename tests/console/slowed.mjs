// The console at an address the admin API slows down for wrong tokens
// (`429`), driven by tests/console.rs: the page shows its login form with
// the API's reason (it showed only a flash, so the right token, which is
// never slowed down, could not be entered), sends nothing while it asks
// (each refresh sent the refused token again, a wrong guess), and the right
// token signs it in. Env: ADMIN_URL, ADMIN_TOKEN, EVENT_IDS, CHROMIUM.

import { env, inChromium } from './page.mjs';
const ids = env('EVENT_IDS').split(',');

await inChromium('slowed', async (page, errors) => {
  const asked = [];
  page.on('request', (r) => r.url().includes('/api/') && asked.push(r.url()));
  // The budget refills one a second while the test's guesses spend it: a
  // page load that came just after a refill got a 401 (the form then asks
  // without saying "too many"); loaded again until one got the 429. Again
  // by a reload: a `goto` to the URL shown, fragment and all, is a
  // same-document navigation that asks nothing (CI once failed after
  // twenty such "loads", all showing the first one's 401).
  let msg = '';
  for (let i = 0; i < 20 && !/too many/i.test(msg); i++) {
    const sent = asked.length;
    if (i === 0) await page.goto(`${env('ADMIN_URL')}/ui#/events`);
    else await page.reload();
    await page.waitForSelector('#login:not([hidden])');
    if (asked.length === sent) throw new Error(`load ${i + 1} asked the API nothing: the page was not loaded again`);
    msg = await page.textContent('#login-msg');
  }
  if (!/too many/i.test(msg)) throw new Error(`the login form does not say why: ${JSON.stringify(msg)}`);
  // Errors of the pages the loads above left (a fetch cut short by the next
  // load) are theirs; from here on, any error in the page fails the test.
  errors.length = 0;
  // Auto-refresh is paused while the form is shown (2.5 s a refresh).
  const before = asked.length;
  await page.waitForTimeout(6000);
  if (asked.length !== before) throw new Error(`${asked.length - before} requests sent while the form was shown`);
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  for (const id of ids) await page.waitForSelector(`#events-table tr[data-id="${id}"]`, { timeout: 15000 });
  if (await page.locator('#login').isVisible()) throw new Error('login form still shown');
});
