// Lists the API cuts at a limit say so in the console, with a way to the
// rest (tests/console.rs): 105 events, the Events page lists the newest 100,
// says so, and its "older" button lists the other 5; the Subscribers page
// shows a pull subscriber's last pull and its leases. Env: ADMIN_URL, CHROMIUM.

import { env, inChromium } from './page.mjs';
const ADMIN = env('ADMIN_URL');

await inChromium('lists', async (page) => {
  const rows = () => page.locator('#events-table tbody tr').count();
  await page.goto(`${ADMIN}/ui#/events`);
  await page.waitForSelector('#events-table');
  const first = await rows();
  const note = await page.locator('#events-note').innerText();
  console.log(`step: events page lists ${first} rows of 105: ${note}`);
  if (first !== 100) throw new Error(`the Events page lists ${first} events, not the newest 100`);
  if (!/showing the newest 100 events; older ones match too/.test(note)) throw new Error(`the Events page does not say older events exist: ${note}`);
  await page.click('#events-older');
  await page.waitForFunction(() => document.querySelectorAll('#events-table tbody tr').length === 5);
  const older = await page.locator('#events-table').innerText();
  if (!/lists-0\b/.test(older)) throw new Error(`the older page does not list the oldest event: ${older}`);
  if (await page.locator('#events-older').count()) throw new Error('the last page still offers older events');
  await page.click('#events-newest');
  await page.waitForFunction(() => document.querySelectorAll('#events-table tbody tr').length === 100);
  console.log('step: older and back to the newest');

  await page.goto(`${ADMIN}/ui#/subscribers`);
  await page.waitForSelector('#subscribers-table tr[data-name="laptop"]');
  const head = await page.locator('#subscribers-table thead').innerText();
  const pulled = await page.locator('#subscribers-table tr[data-name="laptop"] td.last-pull').innerText();
  const leased = await page.locator('#subscribers-table tr[data-name="laptop"] td.leased').innerText();
  const push = await page.locator('#subscribers-table tr[data-name="s"] td.last-pull').innerText();
  console.log(`step: subscribers columns: ${head.replace(/\s+/g, ' | ')}; laptop last pull ${pulled}, leased ${leased}`);
  if (!/^\d+s ago from 127\.0\.0\.1/.test(pulled)) throw new Error(`the pull subscriber's last pull is not shown: ${pulled}`);
  if (leased !== '1') throw new Error(`the pull subscriber's lease is not shown: ${leased}`);
  if (push !== '–') throw new Error(`a push subscriber shows a last pull: ${push}`);
});
