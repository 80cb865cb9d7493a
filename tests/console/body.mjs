// An event's JSON body in the console, driven by tests/console.rs: indented,
// with its numbers and keys as the provider sent them (the page parsed and
// printed it again: 12345678901234567891 became 12345678901234567000, 1.10
// became 1.1, 1e2 became 100, and one of two duplicate keys was left out).
// Env: ADMIN_URL, EVENT_ID, WIDE_ID, WIDE_SIZE, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('body', async (page) => {
  await page.goto(`${env('ADMIN_URL')}/ui#/events/${env('EVENT_ID')}`);
  await page.waitForSelector('#event-body');
  const text = await page.textContent('#event-body');
  for (const want of ['"id": 12345678901234567891', '"amount": 1.10', '"price": 1e2', '"dup": 1', '"dup": 2', '"note": "a, b: {c}"']) {
    if (!text.includes(want)) throw new Error(`the body lacks ${JSON.stringify(want)}:\n${text}`);
  }
  if (!text.includes('\n  "data": {\n    "task_id"')) throw new Error(`not indented:\n${text}`);
  // A body wide and deep (valid JSON, 120 levels) is shown as it came: its
  // indented form came to hundreds of times its size (seconds of drawing,
  // or a blank page; console review, stop 61).
  const started = Date.now();
  await page.goto(`${env('ADMIN_URL')}/ui#/events/${env('WIDE_ID')}`);
  await page.waitForSelector(`#event-detail[data-id="${env('WIDE_ID')}"] #event-body`);
  const wide = await page.textContent('#event-body');
  const size = Number(env('WIDE_SIZE'));
  if (wide.length > 8 * size + 65536) throw new Error(`a body of ${size} bytes shown as ${wide.length} characters`);
  if (!wide.includes('"task_id":"wide"')) throw new Error(`the wide body is not shown as sent: ${wide.slice(0, 200)}`);
  console.log(`a ${size}-byte wide body shown as ${wide.length} characters in ${Date.now() - started} ms`);
  console.log('BODY OK');
});
