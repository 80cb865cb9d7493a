// An event's JSON body in the console, driven by tests/console.rs: indented,
// with its numbers and keys as the provider sent them (the page parsed and
// printed it again: 12345678901234567891 became 12345678901234567000, 1.10
// became 1.1, 1e2 became 100, and one of two duplicate keys was left out).
// Env: ADMIN_URL, EVENT_ID, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('body', async (page) => {
  await page.goto(`${env('ADMIN_URL')}/ui#/events/${env('EVENT_ID')}`);
  await page.waitForSelector('#event-body');
  const text = await page.textContent('#event-body');
  for (const want of ['"id": 12345678901234567891', '"amount": 1.10', '"price": 1e2', '"dup": 1', '"dup": 2', '"note": "a, b: {c}"']) {
    if (!text.includes(want)) throw new Error(`the body lacks ${JSON.stringify(want)}:\n${text}`);
  }
  if (!text.includes('\n  "data": {\n    "task_id"')) throw new Error(`not indented:\n${text}`);
  console.log('BODY OK');
});
