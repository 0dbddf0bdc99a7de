// Opens the exporter's status page in Debian's chromium and checks what an operator sees:
// no script errors, hostile values shown as text only, no wrapped table cell at 1280 px,
// the stuck image, the credential back-off and the links. Writes a screenshot.
//
// Usage: node check.mjs URL SCREENSHOT_PATH [EXPECTED_HOSTILE_TEXT]
// Exits 0 when every check passes, 1 (with the failures listed) otherwise.
import { chromium } from 'playwright-core';

const [url, screenshot, hostile] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node check.mjs URL SCREENSHOT_PATH [EXPECTED_HOSTILE_TEXT]');
  process.exit(2);
}

const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  const pageErrors = [];
  const dialogs = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('dialog', async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  // Nothing but the page itself may load: it has no script, image or remote resource.
  const requests = [];
  page.on('request', (request) => requests.push(request.url()));

  const response = await page.goto(url, { waitUntil: 'load' });
  check(response && response.status() === 200, `GET ${url} answered ${response?.status()}`);

  const facts = await page.evaluate(() => {
    const text = (el) => (el ? el.textContent.trim() : null);
    const cells = [...document.querySelectorAll('td, th')];
    const wrapped = cells
      .filter((cell) => {
        const style = getComputedStyle(cell);
        const line = parseFloat(style.lineHeight);
        const inner =
          cell.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
        // One line of text fits its line height; a wrapped cell is a multiple of it.
        return !(line > 0) || inner > line * 1.5 || style.whiteSpace !== 'nowrap';
      })
      .map((cell) => `${cell.tagName} "${cell.textContent.slice(0, 60)}" ${cell.clientHeight}px`);
    const stuckRows = [...document.querySelectorAll('#saving tr.stuck')].map((row) =>
      [...row.cells].map((c) => c.textContent.trim()),
    );
    // A cut cell keeps the whole value in its tooltip.
    const cutWithoutTitle = [...document.querySelectorAll('td.cut')]
      .filter((cell) => cell.getAttribute('title') !== cell.textContent)
      .map((cell) => cell.textContent.slice(0, 60));
    return {
      cellCount: cells.length,
      wrapped,
      pageWidth: document.documentElement.scrollWidth,
      widestTable: Math.max(
        0,
        ...[...document.querySelectorAll('table')].map((t) => Math.ceil(t.getBoundingClientRect().right)),
      ),
      scripts: document.querySelectorAll('script').length,
      images: document.querySelectorAll('img').length,
      onerror: document.querySelectorAll('[onerror]').length,
      bodyText: document.body.innerText,
      titles: [...document.querySelectorAll('[title]')].map((el) => el.getAttribute('title')),
      stuckRows,
      cutWithoutTitle,
      backoff: text(
        [...document.querySelectorAll('.facts tr')].find(
          (row) => text(row.querySelector('th')) === 'Credential back-off',
        )?.querySelector('td'),
      ),
      heldAccounts: [...document.querySelectorAll('#held tr')].slice(1).map((row) =>
        [...row.cells].map((c) => c.textContent.trim()),
      ),
      dataAge: text(
        [...document.querySelectorAll('.facts tr')].find(
          (row) => text(row.querySelector('th')) === 'Data',
        )?.querySelector('td b'),
      ),
      rendered: text(document.querySelector('header .now time')),
      links: [...document.querySelectorAll('a')].map((a) => ({
        text: a.textContent.trim(),
        href: a.getAttribute('href'),
      })),
    };
  });

  check(consoleErrors.length === 0, `console errors: ${JSON.stringify(consoleErrors)}`);
  check(pageErrors.length === 0, `page errors: ${JSON.stringify(pageErrors)}`);
  check(dialogs.length === 0, `dialogs opened (injected script ran): ${JSON.stringify(dialogs)}`);
  check(facts.scripts === 0, `${facts.scripts} <script> elements`);
  check(facts.images === 0, `${facts.images} <img> elements`);
  check(facts.onerror === 0, `${facts.onerror} elements with an onerror attribute`);
  const foreign = requests.filter((r) => r !== url);
  check(foreign.length === 0, `requests besides the page: ${JSON.stringify(foreign)}`);

  check(facts.cellCount > 0, 'no table cells');
  check(facts.wrapped.length === 0, `wrapped cells: ${JSON.stringify(facts.wrapped)}`);
  check(facts.pageWidth <= 1280, `page is ${facts.pageWidth} px wide, more than the 1280 px viewport`);
  check(facts.widestTable <= 1280, `a table ends at ${facts.widestTable} px, past the 1280 px viewport`);
  check(
    facts.cutWithoutTitle.length === 0,
    `cut cells without the whole value as title: ${JSON.stringify(facts.cutWithoutTitle)}`,
  );

  check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(facts.rendered ?? ''), `rendered time: ${facts.rendered}`);
  check(/^\d+ (s|min|h|d) ago$/.test(facts.dataAge ?? ''), `data age: ${facts.dataAge}`);

  if (hostile) {
    check(facts.bodyText.includes(hostile), `the hostile value is not shown as text: ${hostile}`);
    check(facts.titles.includes(hostile), 'the hostile value is not a tooltip as it is');
    check(
      facts.stuckRows.some((cells) => cells.includes(hostile) && cells[0] === 'stuck'),
      `no stuck row names the hostile image: ${JSON.stringify(facts.stuckRows)}`,
    );
  }
  check(facts.stuckRows.length > 0, 'no stuck SAVING image row');
  check(/holding back until|tries them again/.test(facts.backoff ?? '') || facts.heldAccounts.length > 0,
    `no credential back-off shown: ${facts.backoff} ${JSON.stringify(facts.heldAccounts)}`);
  check(
    facts.heldAccounts.some((cells) => /holding back until \d{4}-/.test(cells[1] ?? '')),
    `no account held back with a time: ${JSON.stringify(facts.heldAccounts)}`,
  );

  const hrefs = facts.links.map((l) => l.href);
  for (const path of ['/metrics', '/-/healthy', '/-/ready']) {
    check(hrefs.includes(path), `no link to ${path}`);
  }
  for (const anchor of [
    'flexcloudimagestucksaving',
    'flexcloudapicredentialsrejected',
    'flexcloudprobefailing',
  ]) {
    check(
      hrefs.some((h) => /^https?:\/\/.+\/runbook\.md#/.test(h) && h.endsWith(`#${anchor}`)),
      `no runbook link to #${anchor}`,
    );
  }
  check(
    facts.links.some((l) => l.text.startsWith('Dashboard') && /^https?:\/\//.test(l.href)),
    'no dashboard link',
  );

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(
    `checked ${url}: ${facts.cellCount} cells, widest table ends at ${facts.widestTable} px of 1280, ` +
      `${facts.stuckRows.length} stuck rows, screenshot ${screenshot}`,
  );
} catch (error) {
  failures.push(`error: ${error?.stack ?? error}`);
} finally {
  await browser.close();
}

if (failures.length > 0) {
  console.error(`status page check failed:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
