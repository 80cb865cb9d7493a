// Task ids as the console shows them, driven by tests/console.rs: one
// holding a right-to-left override shows the control named (`⟨U+202E⟩`),
// not obeyed (it showed other text than it holds), and one of 256
// characters without a space wraps in its cell instead of widening the
// events and tasks tables past the window. Env: ADMIN_URL, BIDI_TASK,
// MARK_TASK, KEEP_TASK, LONG_TASK, LONG_EVENT, CHROMIUM.

import { env, inChromium } from './page.mjs';

await inChromium('shown', async (page) => {
  const bidi = env('BIDI_TASK');
  const mark = env('MARK_TASK');
  const keep = env('KEEP_TASK');
  const long = env('LONG_TASK');
  const fits = (table) =>
    page.evaluate((t) => {
      const e = document.querySelector(t);
      return [e.getBoundingClientRect().right, document.documentElement.clientWidth];
    }, table);
  for (const [hash, table, cell] of [
    ['#/events', '#events-table', 'td.task'],
    ['#/tasks', '#tasks-table', 'td.task'],
  ]) {
    await page.goto(`${env('ADMIN_URL')}/ui${hash}`);
    await page.waitForSelector(`${table} ${cell}`);
    await page.waitForFunction(
      ([t, c, n]) => {
        const texts = [...document.querySelectorAll(`${t} ${c}`)].map((x) => x.textContent);
        return texts.some((x) => x.length === n) && texts.some((x) => x.includes('gnp.exe'));
      },
      [table, cell, long.length],
    );
    const texts = await page.$$eval(`${table} ${cell}`, (cs) => cs.map((c) => c.textContent));
    if (texts.some((t) => t.includes('\u202E'))) throw new Error(`${table}: a bidi control is obeyed: ${JSON.stringify(texts)}`);
    const named = bidi.replace('\u202E', '⟨U+202E⟩');
    if (!texts.includes(named)) throw new Error(`${table}: ${JSON.stringify(named)} not shown: ${JSON.stringify(texts)}`);
    // The invisible right-to-left mark too ("id ‏12 34‏" read "id 34 12").
    // And the other invisible characters (an invisible operator, a soft
    // hyphen, a tag, a variation selector after ASCII).
    let marked = mark;
    for (const c of ['\u200F', '\u200B', '\u2061', '\u00AD', '\u{E0041}', '\uFE0F']) {
      marked = marked.replaceAll(c, `⟨U+${c.codePointAt(0).toString(16).toUpperCase()}⟩`);
    }
    if (!texts.includes(marked)) throw new Error(`${table}: ${JSON.stringify(marked)} not shown: ${JSON.stringify(texts)}`);
    // An emoji's variation selector and joiner shape it: left as they are.
    if (!texts.includes(keep)) throw new Error(`${table}: ${JSON.stringify(keep)} not shown as it is: ${JSON.stringify(texts)}`);
    if (!texts.includes(long)) throw new Error(`${table}: the long task id is not shown whole`);
    const [right, width] = await fits(table);
    if (right > width + 1) throw new Error(`${table} is ${right}px wide in a ${width}px window`);
    console.log(`${table}: ${named} shown; ${long.length}-character id wraps (${Math.round(right)}px of ${width})`);
  }
  // An event's own page: its task id and its headers wrap too (the change
  // review, stop 63: 2,352 px).
  await page.goto(`${env('ADMIN_URL')}/ui#/events/${env('LONG_EVENT')}`);
  await page.waitForSelector('#event-detail');
  const [right, width] = await fits('#main');
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (right > width + 1 || wide > width + 1) throw new Error(`the event page is ${wide}px wide in a ${width}px window`);
  console.log(`the event page of the long task id fits (${wide}px of ${width})`);
});
