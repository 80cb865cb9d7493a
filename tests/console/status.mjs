// The console's Status page in a real headless Chromium, driven by
// tests/nats_console.rs (a cluster-mode relay, no admin token). Env:
// ADMIN_URL, CHROMIUM, MESSAGES (the text the store's `messages` row must
// show, e.g. `3`, or `unknown …` while NATS is away), SIZE_UNKNOWN (`1`: the
// size row must say unknown too, and the ready row that it is not, with
// why; `0`: it must show a size). Prints one line
// per step; exits non-zero with the reason on failure.

import { env, inChromium } from './page.mjs';
const [ADMIN, MESSAGES, SIZE_UNKNOWN] = ['ADMIN_URL', 'MESSAGES', 'SIZE_UNKNOWN'].map(env);

await inChromium('status', async (page) => {
  await page.goto(`${ADMIN}/ui#/status`);
  await page.waitForSelector('#status');
  // The store's rows, from the definition list the page renders.
  const rows = () =>
    page.evaluate(() =>
      Object.fromEntries([...document.querySelectorAll('#status dt')].map((dt) => [dt.textContent, dt.nextElementSibling.textContent])),
    );
  const away = SIZE_UNKNOWN === '1';
  const want = (r) =>
    r.messages === MESSAGES && /^unknown/.test(r.size) === away && (!away || /^no: .*NATS/.test(r.ready));
  let r = await rows();
  for (let i = 0; i < 150 && !want(r); i++) {
    await page.waitForTimeout(100);
    r = await rows();
  }
  if (!want(r)) {
    throw new Error(`rows: messages ${JSON.stringify(r.messages)}, size ${JSON.stringify(r.size)}, ready ${JSON.stringify(r.ready)}`);
  }
  console.log(`step: messages ${r.messages}, size ${r.size}, ready ${r.ready}`);
});
