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
  await page.click(button);
  await page.waitForTimeout(150);
  await page.click(button);
  await page.waitForSelector('#flash.ok');
  console.log(`flash: ${await page.textContent('#flash')}`);
  console.log('DBLCLICK OK');
});
