// An event whose media URL failed: its page shows the URL failed and offers
// to archive it again; the button asks the relay, says what it queued, and
// the page (refreshing itself) then shows the file stored. An event whose
// media is all stored offers no such button (tests/console.rs).
// Env: ADMIN_URL, EVENT_ID, CHROMIUM.

import { env, inChromium } from './page.mjs';
const ADMIN = env('ADMIN_URL');
const ID = env('EVENT_ID');

await inChromium('media', async (page) => {
  await page.goto(`${ADMIN}/ui#/events/${encodeURIComponent(ID)}`);
  await page.waitForSelector('#media-table tr.media');
  const before = await page.locator('#media-table tr.media').innerText();
  console.log(`step: media before: ${before.replace(/\s+/g, ' ')}`);
  if (!/failed/.test(before)) throw new Error(`the media is not shown failed: ${before}`);
  await page.click('#retry-media');
  await page.waitForFunction(() => /queued/.test(document.getElementById('flash').textContent));
  const said = await page.locator('#flash').innerText();
  console.log(`step: the console said: ${said}`);
  if (!/1 URL\(s\) queued/.test(said)) throw new Error(`the retry's answer is not shown: ${said}`);
  await page.waitForFunction(() => /stored/.test(document.querySelector('#media-table tr.media')?.textContent || ''), null, { timeout: 30000 });
  console.log('step: the file is stored');
  if (await page.locator('#retry-media').count()) throw new Error('a stored file is still offered for a retry');
});
