// A dead letter's row on a page shown a while ago, driven by tests/console.rs
// (console review, stop 66): while the pointer is on its Replay button the
// automatic refresh does not redraw the table under it (a new letter on top
// moved the rows, and the click replayed another event); the row's replay
// asks `only=dead`, so once every letter was replayed elsewhere (the CLI,
// another tab) the click sends nothing again (it did: a second delivery).
// Once the pointer leaves, the page shows the letters gone. The event page
// of one, shown before too, replays nothing again from its Replay button.
// Env: ADMIN_URL, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('stale', async (page) => {
  await page.goto(`${env('ADMIN_URL')}/ui#/dead-letters`);
  const button = '#dead-table tr[data-subscriber="flaky"] button.replay';
  await page.waitForSelector(button);
  // The event page of one of them, open in another tab (admin review, stop
  // 67): its Replay beside the dead delivery asks `only=dead` too.
  const eventId = await page.getAttribute('#dead-table tr[data-subscriber="flaky"]', 'data-event');
  const tab = await page.context().browser().newPage();
  await tab.goto(`${env('ADMIN_URL')}/ui#/events/${encodeURIComponent(eventId)}`);
  const eventButton = 'section.subscriber[data-name="flaky"] button.replay';
  await tab.waitForSelector(eventButton);
  // Shown as it is now until the click (a refresh would show it delivered).
  await tab.uncheck('#auto');
  await page.bringToFront();
  await page.hover(button);
  // Every dead letter replayed elsewhere while the page shows them.
  const status = await page.evaluate(async () => {
    const r = await fetch('/api/dead-letters/replay', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: '{}',
    });
    return r.status;
  });
  if (status !== 200) throw new Error(`the replay of every dead letter answered ${status}`);
  // Two automatic refreshes (2.5 s apart): the letters are delivered by
  // now, and the table stays as it was under the pointer.
  await page.waitForTimeout(6000);
  const held = await page.textContent('#updated');
  if (!held.includes('held')) throw new Error(`the page was redrawn under the pointer: "${held}"`);
  await page.click(button);
  await page.waitForSelector('#flash.error');
  console.log(`flash: ${await page.textContent('#flash')}`);
  // The event page still shows it dead (refreshed every 30 s): its Replay
  // sends nothing again either.
  await tab.bringToFront();
  await tab.click(eventButton);
  await tab.waitForSelector('#flash.error');
  console.log(`event page flash: ${await tab.textContent('#flash')}`);
  await page.bringToFront();
  // The pointer leaves: the page shows what the API says, no letters.
  await page.mouse.move(0, 0);
  await page.waitForSelector('#dead-table tr[data-subscriber="flaky"]', { state: 'detached', timeout: 10000 });
});
