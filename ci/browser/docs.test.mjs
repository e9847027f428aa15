// The API docs page (/api/docs/, issue 16) in a real Chromium with no way
// out: every request to another origin is refused and fails the test, so
// the page must render the whole API from assets compiled into the binary.
// Run by ci/browser-test, or by hand:
//   VATO_BASE=http://127.0.0.1:8000 node --test ci/browser/docs.test.mjs
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.VATO_BASE || 'http://127.0.0.1:8000').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ART = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');

let browser;
after(async () => { if (browser) await browser.close(); });

it('renders every operation with no request leaving the server', async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const outside = [];
  const problems = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(BASE + '/') || url.startsWith('data:')) return route.continue();
    outside.push(url);
    return route.abort();
  });
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));

  await page.goto(`${BASE}/api/docs/`);
  // Swagger UI fetched /api/schema/ and drew an operation block for each.
  await page.waitForSelector('.opblock', { timeout: 15000 });
  const schema = await (await fetch(`${BASE}/api/schema/`)).json();
  const methods = ['get', 'post', 'put', 'patch', 'delete'];
  const expected = Object.values(schema.paths)
    .reduce((n, item) => n + methods.filter((m) => item[m]).length, 0);
  const drawn = await page.$$eval('.opblock', (blocks) => blocks.length);
  assert.equal(drawn, expected, 'one block per operation');
  assert.match(await page.textContent('.info .title'), /Vato/);

  // An operation opens and shows its answers.
  await page.click('#operations-messages-messages_history .opblock-summary');
  await page.waitForSelector('#operations-messages-messages_history .responses-table');

  fs.mkdirSync(ART, { recursive: true });
  await page.screenshot({ path: path.join(ART, 'api-docs.png') });
  assert.deepEqual(outside, [], 'requests to other origins');
  assert.deepEqual(problems.filter((p) => /Content Security Policy|Refused/.test(p)), [], 'CSP violations');
});
