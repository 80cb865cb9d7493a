// Review 30 (tests/review30_tests.rs): the Events page with more events than
// it lists must say so (or offer the older ones); the Subscribers page must
// show a pull subscriber's last pull. Env: ADMIN_URL, CHROMIUM.

import { env, inChromium } from './page.mjs';
const ADMIN = env('ADMIN_URL');

await inChromium('review30', async (page) => {
  const problems = [];
  await page.goto(`${ADMIN}/ui#/events`);
  await page.waitForSelector('#events-table');
  const rows = await page.locator('#events-table tbody tr').count();
  const text = await page.locator('#main').innerText();
  console.log(`step: events page lists ${rows} rows of 105`);
  const says = /\b105\b|more|older|next|newest/i.test(text.replace(/r30-console-\d+/g, ''));
  if (rows < 105 && !says) problems.push(`the Events page lists ${rows} of 105 events and says nothing about the other ${105 - rows} (no count, no "older" link)`);

  await page.goto(`${ADMIN}/ui#/subscribers`);
  await page.waitForSelector('#subscribers-table tr[data-name="laptop"]');
  const head = await page.locator('#subscribers-table thead').innerText();
  const row = await page.locator('#subscribers-table tr[data-name="laptop"]').innerText();
  console.log(`step: subscribers columns: ${head.replace(/\s+/g, ' | ')}; laptop: ${row.replace(/\s+/g, ' | ')}`);
  if (!/last pull|pulled/i.test(head + row)) problems.push(`the Subscribers page does not show the pull subscriber's last pull (columns: ${head.replace(/\s+/g, ' | ')})`);
  if (problems.length) throw new Error(problems.join('; '));
});
