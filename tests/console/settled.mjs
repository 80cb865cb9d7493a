// An event page whose event can no longer change by itself (delivered to
// every subscriber, no media pending) is asked again every 30 s, not every
// 2.5 s (the whole event, its body up to server.max_body, each time; console
// review, stop 61); after a Replay clicked there it is asked at the usual
// pace again, so the replay's progress shows. Driven by tests/console.rs.
// Env: ADMIN_URL, EVENT_ID, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('settled', async (page) => {
  const id = env('EVENT_ID');
  let asked = 0;
  page.on('request', (r) => new URL(r.url()).pathname === `/api/events/${id}` && asked++);
  await page.goto(`${env('ADMIN_URL')}/ui#/events/${id}`);
  await page.waitForSelector(`#event-detail[data-id="${id}"]`);
  const first = asked;
  await page.waitForTimeout(8000);
  const settled = asked - first;
  console.log(`a settled event asked ${settled} more time(s) in 8 s`);
  if (settled > 1) throw new Error(`a settled event was asked ${settled} times in 8 s`);
  await page.click('#event-detail .subscriber button.replay');
  await page.waitForSelector('#flash.ok');
  // Asked at the usual pace (2.5 s; a slow answer spaces them more): twice
  // within 10 s, where the settled pace asks at most once.
  const replayed = asked;
  const since = Date.now();
  while (asked - replayed < 2 && Date.now() - since < 10000) await page.waitForTimeout(250);
  console.log(`after a replay: ${asked - replayed} time(s) in ${Date.now() - since} ms`);
  if (asked - replayed < 2) throw new Error(`after a replay the event was asked ${asked - replayed} times in 10 s`);
});
