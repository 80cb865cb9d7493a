// A double-click on an event's Replay button, driven by tests/console.rs:
// the two clicks 150 ms apart (a person's double-click) ask one replay. The
// second click came after a fast subscriber had the first replay, and was
// a second replay: two deliveries (console review, stop 61). The test
// counts what the subscriber received.
// Env: ADMIN_URL, EVENT_ID, SUBSCRIBER, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('dblclick', async (page) => {
  await page.goto(`${env('ADMIN_URL')}/ui#/events/${env('EVENT_ID')}`);
  const button = `#event-detail .subscriber[data-name="${env('SUBSCRIBER')}"] button.replay`;
  await page.waitForSelector(button);
  // Both clicks from the page itself, 150 ms apart whatever the driver's
  // own latency on a loaded machine (the guard holds a second for them).
  await page.evaluate((sel) => {
    const b = document.querySelector(sel);
    b.click();
    setTimeout(() => {
      b.click();
      window.clickedTwice = true;
    }, 150);
  }, button);
  // The second click made (a stalled page firing it after the browser had
  // closed made the test pass whatever the guard did).
  await page.waitForFunction(() => window.clickedTwice === true);
  // Time for a second replay's request to leave before the browser closes.
  await page.waitForTimeout(500);
  await page.waitForSelector('#flash.ok');
  console.log(`flash: ${await page.textContent('#flash')}`);
  console.log('DBLCLICK OK');
});
