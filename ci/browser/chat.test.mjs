// Real-browser test of Vato's web client: two browser contexts (two users, one
// of them on a phone-sized screen) chat through the page served by a fresh
// `vato-server --demo`. Run by ci/browser-test, or by hand:
//   VATO_BASE=http://127.0.0.1:8000 node --test ci/browser/chat.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.VATO_BASE || 'http://127.0.0.1:8000').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ART = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const LIVE_MS = 1000; // a message must show up in the other window within this
const suffix = Date.now().toString(36).slice(-6);
const users = {
  a: { username: `ana_${suffix}`, display: 'Ana', password: 'correct-horse-1' },
  b: { username: `ben_${suffix}`, display: 'Ben', password: 'correct-horse-2' },
};

// Runs in every page before its own scripts: records when each message text was
// first seen and every change of the connection badge, with the page's clock.
function recorder() {
  window.__arrivals = {};
  window.__conn = [];
  let last = null;
  new MutationObserver(() => {
    for (const n of document.querySelectorAll('[data-testid=message]:not(.pending) [data-testid=message-text]')) {
      if (!(n.textContent in window.__arrivals)) window.__arrivals[n.textContent] = Date.now();
    }
    const c = document.querySelector('[data-testid=conn-state]');
    if (c && c.textContent !== last) { last = c.textContent; window.__conn.push({ state: last, t: Date.now() }); }
  }).observe(document, { subtree: true, childList: true, characterData: true });
}

let browser, A, B;
const pageErrors = [];
let shotsTaken = false;

const texts = (page) => page.$$eval('[data-testid=message] [data-testid=message-text]', (ns) => ns.map((n) => n.textContent));
const connState = (page) => page.textContent('[data-testid=conn-state]');
const waitLive = (page, timeout = 10000) =>
  page.waitForFunction(() => document.querySelector('[data-testid=conn-state]').textContent === 'live', null, { timeout });
const waitText = (page, text, timeout = 5000) =>
  page.waitForFunction((t) => Array.from(document.querySelectorAll('[data-testid=message]:not(.pending) [data-testid=message-text]'))
    .some((n) => n.textContent === t), text, { timeout });
const waitNoPending = (page) => page.waitForFunction(() => !document.querySelector('[data-testid=message].pending'), null, { timeout: 5000 });

// Type into the composer and press Send; returns the page's clock at the click.
async function send(page, text) {
  await page.fill('[data-testid=composer-input]', text);
  return page.evaluate(() => { const t = Date.now(); document.querySelector('[data-testid=composer-send]').click(); return t; });
}

async function screenshots() {
  fs.mkdirSync(ART, { recursive: true });
  const fa = path.join(ART, 'desktop-ana.png');
  const fb = path.join(ART, 'mobile-ben.png');
  await A.screenshot({ path: fa });
  await B.screenshot({ path: fb });
  // Both windows side by side in one picture, composed by the same browser.
  const ctx = await browser.newContext({ viewport: { width: 1100 + 390 + 48, height: 860 } });
  const p = await ctx.newPage();
  const img = (f) => `<img style="border:1px solid #ccc;vertical-align:top" src="data:image/png;base64,${fs.readFileSync(f).toString('base64')}">`;
  await p.setContent(`<body style="margin:0;padding:8px;background:#888;display:flex;gap:16px">${img(fa)}${img(fb)}</body>`);
  await p.screenshot({ path: path.join(ART, 'both-windows.png'), fullPage: true });
  await ctx.close();
  shotsTaken = true;
}

describe('web client in a real browser', () => {
  before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    const ctxA = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const ctxB = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    for (const ctx of [ctxA, ctxB]) await ctx.addInitScript(recorder);
    A = await ctxA.newPage();
    B = await ctxB.newPage();
    for (const [name, p] of [['A', A], ['B', B]]) {
      p.setDefaultTimeout(10000);
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') console.log(`[${name} console] ${m.text()}`); });
    }
  });

  after(async () => {
    if (browser) {
      if (!shotsTaken && A && B) await screenshots().catch((e) => console.log('screenshot failed:', e.message));
      await browser.close();
    }
  });

  it('registers two fresh users through the page', async () => {
    for (const [page, u] of [[A, users.a], [B, users.b]]) {
      await page.goto(BASE + '/');
      await page.click('[data-testid=tab-register]');
      await page.fill('[data-testid=register-username]', u.username);
      await page.fill('[data-testid=register-display-name]', u.display);
      await page.fill('[data-testid=register-password]', u.password);
      await page.fill('[data-testid=register-password2]', u.password);
      await page.click('[data-testid=register-submit]');
      await page.waitForSelector('[data-testid=conv-list]', { state: 'attached' });
      await page.waitForFunction((n) => document.querySelector('[data-testid=me-name]').textContent === n, u.display);
      u.id = await page.evaluate(() => JSON.parse(atob(localStorage.getItem('vato.access').split('.')[1]
        .replace(/-/g, '+').replace(/_/g, '/'))).user_id);
      assert.equal(typeof u.id, 'number');
    }
    // Log out and back in through the login form (the other half of the auth UI).
    await B.click('[data-testid=logout]');
    await B.fill('[data-testid=login-username]', users.b.username);
    await B.fill('[data-testid=login-password]', users.b.password);
    await B.click('[data-testid=login-submit]');
    await B.waitForFunction(() => document.querySelector('[data-testid=me-name]').textContent === 'Ben');
  });

  let cid;
  it('starts a direct conversation by user search; both open it', async () => {
    await A.fill('[data-testid=user-search]', users.b.username);
    await A.click(`[data-testid=user-result][data-user-id="${users.b.id}"]`);
    await waitLive(A);
    cid = Number(/#\/c\/(\d+)/.exec(A.url())[1]);
    assert.ok(cid > 0);
    assert.equal(await A.textContent('[data-testid=chat-name]'), 'Ben');
    // B sees the new conversation in its list (reload to not wait for the list poll) and opens it.
    await B.reload();
    await B.click(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    await waitLive(B);
    assert.equal(await B.textContent('[data-testid=chat-name]'), 'Ana');
    // Phone layout: the chat pane replaced the list.
    assert.equal(await B.isVisible('[data-testid=conv-list]'), false);
    assert.equal(await B.isVisible('[data-testid=composer-input]'), true);
  });

  const expected = [];
  const latencies = [];
  it('exchanges messages both ways: live within a second, exactly once, in order', async () => {
    for (let i = 1; i <= 3; i++) {
      for (const [from, to, who] of [[A, B, 'Ana'], [B, A, 'Ben']]) {
        const text = `${who} says ${i} (${suffix})`;
        const t0 = await send(from, text);
        await waitText(to, text);
        const dt = (await to.evaluate((t) => window.__arrivals[t], text)) - t0;
        assert.ok(dt < LIVE_MS, `"${text}" took ${dt} ms to reach the other window`);
        latencies.push(dt);
        expected.push(text);
      }
    }
    console.log(`send-to-other-window latencies (ms): ${latencies.join(', ')}`);
    for (const p of [A, B]) {
      await waitNoPending(p);
      assert.deepEqual(await texts(p), expected);
      // Every shown message is the server's (id, seq), own ones matched by client_id.
      const rows = await p.$$eval('[data-testid=message]', (ns) => ns.map((n) => ({
        id: Number(n.dataset.messageId), seq: Number(n.dataset.seq), cid: n.dataset.clientId, mine: n.classList.contains('mine') })));
      for (const r of rows) assert.ok(r.id > 0 && r.seq > 0, JSON.stringify(r));
      for (const r of rows.filter((x) => x.mine)) assert.ok(r.cid, 'own message without client_id');
      assert.deepEqual(rows.map((r) => r.id), rows.map((r) => r.id).slice().sort((x, y) => x - y));
    }
  });

  it('shows the typing indicator and read state', async () => {
    await A.focus('[data-testid=composer-input]');
    await A.keyboard.type('typing…');
    await B.waitForFunction(() => /Ana is typing/.test(document.querySelector('[data-testid=typing-indicator]').textContent),
      null, { timeout: 3000 });
    await A.fill('[data-testid=composer-input]', '');
    // B has the conversation open: A's last message gets "read".
    await A.waitForFunction(() => {
      const mine = document.querySelectorAll('[data-testid=message].mine [data-testid=message-status]');
      return mine.length && mine[mine.length - 1].textContent === 'read';
    }, null, { timeout: 5000 });
  });

  it('shows the same history after a reload', async () => {
    for (const p of [A, B]) {
      await p.reload();
      await waitLive(p);
      await p.waitForFunction((n) => document.querySelectorAll('[data-testid=message]').length >= n, expected.length);
      assert.deepEqual(await texts(p), expected);
    }
  });

  it('a server-side socket cut: the missed message shows after the automatic reconnect, once', async () => {
    const cutAt = await B.evaluate(() => Date.now());
    const token = await B.evaluate(() => localStorage.getItem('vato.access'));
    const r = await fetch(BASE + '/api/dev/drop-sockets/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
      body: JSON.stringify({ user_id: users.b.id }),
    });
    assert.ok(r.ok, `POST /api/dev/drop-sockets/ answered ${r.status} (is the server started with --demo?)`);
    // Right away (B's socket is closed server-side, its reconnect waits out the back-off) Ana sends.
    const fromA = `Ana wrote this while Ben was away (${suffix})`;
    const fromB = `Ben wrote this while cut off (${suffix})`;
    const sentA = await send(A, fromA);
    // B notices the close and queues a message of its own meanwhile.
    await B.waitForFunction((t) => window.__conn.some((c) => c.t >= t && c.state !== 'live'), cutAt, { timeout: 5000 });
    const bWasDown = (await connState(B)) !== 'live';
    await send(B, fromB);
    await waitNoPending(A);
    // B reconnects by itself, resumes with since and gets the missed message.
    await waitText(B, fromA, 15000);
    await waitLive(B);
    await waitText(A, fromB, 15000);
    const conn = await B.evaluate((t) => window.__conn.filter((c) => c.t >= t), cutAt);
    const backLive = conn.find((c) => c.state === 'live');
    console.log(`B's badge after the cut: ${conn.map((c) => `${c.state}@+${c.t - cutAt}ms`).join(' ')}; ` +
      `A sent at +${sentA - cutAt}ms; B's message queued while ${bWasDown ? 'down' : 'live'}`);
    assert.ok(backLive, 'B never came back to live');
    assert.ok(sentA < backLive.t, 'A\'s message was not sent while B was disconnected');
    expected.push(fromA, fromB);
    for (const p of [A, B]) {
      await waitNoPending(p);
      assert.deepEqual(await texts(p), expected);
    }
  });

  it('shows edits and deletions live', async () => {
    const token = await A.evaluate(() => localStorage.getItem('vato.access'));
    const idOf = (page, text) => page.$eval(`[data-testid=message]:has([data-testid=message-text]:text-is("${text}"))`, (n) => n.dataset.messageId);
    const edited = `Ana says 2, edited (${suffix})`;
    const base = `${BASE}/api/chat/conversations/${cid}/messages/`;
    const auth = { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token };
    let r = await fetch(`${base}${await idOf(A, expected[2])}/edit/`, { method: 'PATCH', headers: auth, body: JSON.stringify({ content: edited }) });
    assert.equal(r.status, 200);
    r = await fetch(`${base}${await idOf(A, expected[4])}/soft-delete/`, { method: 'DELETE', headers: auth });
    assert.equal(r.status, 200);
    expected[2] = edited;
    expected[4] = 'message deleted';
    for (const p of [A, B]) {
      await p.waitForFunction((want) => JSON.stringify(Array.from(document.querySelectorAll('[data-testid=message-text]'), (n) => n.textContent)) === want,
        JSON.stringify(expected), { timeout: 3000 });
    }
  });

  it('sends an image from one window; the other shows it, also after a reload', async () => {
    // A 1x1 PNG, picked with the composer's file input.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    const caption = `a picture for Ben (${suffix})`;
    await A.fill('[data-testid=composer-input]', caption);
    await A.setInputFiles('[data-testid=composer-file]', { name: 'dot.png', mimeType: 'image/png', buffer: png });
    const shown = (page) => page.waitForFunction((c) => Array.from(document.querySelectorAll('[data-testid=message]'))
      .some((m) => m.querySelector('[data-testid=message-text]').textContent === c
        && Array.from(m.querySelectorAll('[data-testid=attachment-image]')).some((i) => i.complete && i.naturalWidth === 1)),
    caption, { timeout: 5000 });
    await shown(A);
    await shown(B);
    expected.push(caption);
    for (const p of [A, B]) assert.deepEqual(await texts(p), expected);
    await B.reload();
    await waitLive(B);
    await shown(B);
    // Exactly one message with the picture (the answer and the socket's echo are one).
    assert.equal(await A.$$eval('[data-testid=attachment-image]', (ns) => ns.length), 1);
  });

  it('uploads an avatar in the profile panel; the other window shows it', async () => {
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    const loaded = (page, where) => page.waitForFunction((w) => {
      const i = document.querySelector(`${w} img`);
      return !!i && i.complete && i.naturalWidth === 1;
    }, where, { timeout: 5000 });
    await A.click('[data-testid=profile-open]');
    await A.waitForSelector('[data-testid=profile-panel]:not([hidden])');
    await A.setInputFiles('[data-testid=profile-avatar-file]', { name: 'me.png', mimeType: 'image/png', buffer: png });
    await loaded(A, '[data-testid=me-avatar]');
    await loaded(A, '[data-testid=profile-avatar]');
    const url = await A.getAttribute('[data-testid=me-avatar] img', 'src');
    assert.match(url, /^http:\/\/[^/]+\/media\/[0-9a-f]{64}\.png$/);
    // The status message and settings save from the same panel.
    await A.fill('[data-testid=profile-status]', `around (${suffix})`);
    await A.click('[data-testid=profile-save]');
    await A.waitForFunction(() => document.querySelector('[data-testid=profile-saved]').textContent === 'Saved',
      null, { timeout: 5000 });
    await A.click('[data-testid=profile-open]');
    assert.equal(await A.isVisible('[data-testid=profile-panel]'), false);
    // B's chat header shows A's photo (from the conversation's member objects).
    await B.reload();
    await waitLive(B);
    await loaded(B, '#chat-avatar');
    assert.equal(await B.getAttribute('#chat-avatar img', 'src'), url);
    const status = await B.evaluate(async (id) => {
      const r = await fetch(`/api/auth/users/${id}/`, { headers: { Authorization: 'Bearer ' + localStorage.getItem('vato.access') } });
      return (await r.json()).status_message;
    }, users.a.id);
    assert.equal(status, `around (${suffix})`);
  });

  it('saves screenshots of both windows', async () => {
    await screenshots();
    for (const f of ['desktop-ana.png', 'mobile-ben.png', 'both-windows.png']) {
      assert.ok(fs.statSync(path.join(ART, f)).size > 1000, f);
    }
    console.log(`screenshots in ${ART}`);
  });

  it('pages older history in when scrolled to the top', async () => {
    // 55 more messages from Ana over REST (also delivered live): more than one page of 50.
    const token = await A.evaluate(() => localStorage.getItem('vato.access'));
    for (let i = 1; i <= 55; i++) {
      const content = `bulk ${i} (${suffix})`;
      const r = await fetch(`${BASE}/api/chat/conversations/${cid}/messages/`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
        body: JSON.stringify({ content }),
      });
      assert.equal(r.status, 201);
      expected.push(content);
    }
    await waitText(B, expected[expected.length - 1]);
    assert.deepEqual(await texts(B), expected);
    await B.reload();
    await waitLive(B);
    assert.equal((await texts(B)).length, 50, 'first page is 50 messages');
    // Scroll up until everything is loaded (each scroll to the top loads one more page).
    for (let i = 0; i < 5 && (await texts(B)).length < expected.length; i++) {
      const n = (await texts(B)).length;
      await B.evaluate(() => { document.querySelector('[data-testid=message-list]').scrollTop = 0; });
      await B.waitForFunction((k) => document.querySelectorAll('[data-testid=message]').length > k, n);
    }
    assert.deepEqual(await texts(B), expected);
    await B.evaluate(() => { const l = document.querySelector('[data-testid=message-list]'); l.scrollTop = l.scrollHeight; });
  });

  it('phone: back to the conversation list, which shows the last message', async () => {
    await B.click('[data-testid=back]');
    await B.waitForSelector(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    assert.match(await B.textContent(`[data-testid=conv-item][data-conv-id="${cid}"]`), /bulk 55/);
    assert.equal(await B.isVisible('[data-testid=composer-input]'), false);
    await B.screenshot({ path: path.join(ART, 'mobile-ben-list.png') });
  });

  it('creates a group, manages its members, and a removed member is shut out live', async () => {
    const title = `Team ${suffix}`;
    await A.click('[data-testid=new-group]');
    await A.fill('[data-testid=group-title]', title);
    await A.fill('[data-testid=group-members]', users.b.username);
    await A.click('[data-testid=group-create]');
    await A.waitForFunction((t) => document.querySelector('[data-testid=chat-name]').textContent === t, title);
    await waitLive(A);
    const gid = Number(/#\/c\/(\d+)/.exec(A.url())[1]);
    assert.ok(gid > 0 && gid !== cid);
    await A.click('[data-testid=chat-members]');
    await A.waitForFunction(() => document.querySelectorAll('[data-testid=member-item]').length === 2);
    // B (on its conversation list) finds the group and opens it.
    await B.reload();
    await B.click(`[data-testid=conv-item][data-conv-id="${gid}"]`);
    await waitLive(B);
    assert.equal(await B.textContent('[data-testid=chat-name]'), title);
    const hello = `Ben in the group (${suffix})`;
    await send(B, hello);
    await waitText(A, hello);
    // B is no admin: no remove buttons in B's panel.
    await B.click('[data-testid=chat-members]');
    await B.waitForFunction(() => document.querySelectorAll('[data-testid=member-item]').length === 2);
    assert.equal(await B.$$eval('[data-testid=member-remove]', (ns) => ns.length), 0);
    // A removes B: B's socket is closed (4403) and B is told at once.
    await A.click(`[data-testid=member-item][data-user-id="${users.b.id}"] [data-testid=member-remove]`);
    await A.waitForFunction(() => document.querySelectorAll('[data-testid=member-item]').length === 1);
    await B.waitForFunction(() => /cannot access this conversation/.test(document.querySelector('[data-testid=error]').textContent),
      null, { timeout: 5000 });
    await B.screenshot({ path: path.join(ART, 'mobile-ben-removed.png') });
    // Back to the direct conversation in both windows.
    await B.click('[data-testid=back]');
    await B.waitForSelector(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    await A.click(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    await waitLive(A);
    assert.equal(await A.isVisible('[data-testid=chat-members]'), false, 'no members button in a direct chat');
  });

  it('shows the partner online, then last seen once their page is gone', async () => {
    // B's conversation list is showing; open the chat again so B has a socket.
    await B.click(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    await waitLive(B);
    await A.waitForFunction(() => document.querySelector('[data-testid=chat-presence]').textContent === 'online',
      null, { timeout: 5000 });
    // B leaves the app: its last socket closes; after the server's grace
    // (ci/browser-test runs it with 1 s) A is told by a presence frame.
    await B.goto('about:blank');
    await A.waitForFunction(() => /^last seen /.test(document.querySelector('[data-testid=chat-presence]').textContent),
      null, { timeout: 10000 });
  });

  it('raised no error in either page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
