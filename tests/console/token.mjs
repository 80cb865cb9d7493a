// An admin token with characters outside ASCII, driven by tests/console.rs:
// the page sends its UTF-8 bytes (as the CLI and curl do), and lists the
// events; one pasted with an invisible character is refused, saying so. Env: ADMIN_URL, ADMIN_TOKEN, EVENT_IDS, CHROMIUM.

import { env, inChromium } from './page.mjs';
const ids = env('EVENT_IDS').split(',');

await inChromium('token', async (page, errors) => {
  await page.goto(`${env('ADMIN_URL')}/ui`);
  await page.waitForSelector('#login:not([hidden])');
  // Pasted with a zero-width space: said so, not sent.
  await page.fill('#token', env('ADMIN_TOKEN') + '\u200b');
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#login-msg')?.textContent.includes('invisible character'),
    null, { timeout: 15000 });
  await page.fill('#token', env('ADMIN_TOKEN'));
  await page.click('#login button[type=submit]');
  for (const id of ids) await page.waitForSelector(`#events-table tr[data-id="${id}"]`, { timeout: 15000 });
  if (await page.locator('#login').isVisible()) throw new Error('login form still shown');
  // The 401 that made the page ask for the token is the only error allowed.
  errors.length = 0;
  console.log('TOKEN OK');
});
