// What the console scripts share: their environment, and one page in a real
// headless Chromium that fails the script on any error in the page.

import { chromium } from 'playwright-core';

/** The environment variable `k`, which the driving test must set. */
export const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};

/**
 * Run `body(page, errors)` on a fresh page of the browser named by CHROMIUM.
 * Errors the page throws (and, with `consoleErrors`, logs) fail the script
 * unless `body` clears them; prints `NAME OK`, or the reason and exits 1.
 */
export async function inChromium(name, body, { consoleErrors = false } = {}) {
  const browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
  let failed = null;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(15000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    if (consoleErrors) page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await body(page, errors);
    if (errors.length) throw new Error('errors in the page: ' + errors.join('; '));
    console.log(`${name.toUpperCase()} OK`);
  } catch (e) {
    failed = e;
  } finally {
    await browser.close();
  }
  if (failed) {
    console.error(`${name} test failed: ` + failed.message);
    process.exit(1);
  }
}
