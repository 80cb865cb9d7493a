// A dead letter's row on a page shown a while ago, driven by tests/console.rs
// (console review, stop 66): while the pointer is on its Replay button the
// automatic refresh does not redraw the table under it (a new letter on top
// moved the rows, and the click replayed another event); the row's replay
// asks `only=dead`, so once every letter was replayed elsewhere (the CLI,
// another tab) the click sends nothing again (it did: a second delivery).
// Once the pointer leaves, the page shows the letters gone.
// Env: ADMIN_URL, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('stale', async (page) => {
  await page.goto(`${env('ADMIN_URL')}/ui#/dead-letters`);
  const button = '#dead-table tr[data-subscriber="flaky"] button.replay';
  await page.waitForSelector(button);
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
  // The pointer leaves: the page shows what the API says, no letters.
  await page.mouse.move(0, 0);
  await page.waitForSelector('#dead-table tr[data-subscriber="flaky"]', { state: 'detached', timeout: 10000 });
});
