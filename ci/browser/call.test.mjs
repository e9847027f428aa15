// Real-browser test of the web client's calls (issue 15): the demo users lalo
// (a desktop window) and kalu (a phone-sized one) call each other through the
// page served by a fresh `vato-server --demo`, with Chromium's fake camera and
// microphone, and WebRTC between the two windows on host candidates only.
// Run by ci/browser-test (with chat.test.mjs, one file at a time), or by hand:
//   VATO_BASE=http://127.0.0.1:8000 node --test ci/browser/call.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.VATO_BASE || 'http://127.0.0.1:8000').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ART = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
// Generous: CI is a busy 2-core machine, and ICE with host candidates still
// takes a moment.
const CONNECT_MS = 20000;
const users = {
  a: { username: 'lalo', password: 'lalo123' },
  b: { username: 'kalu', password: 'kalu123' },
};

// Runs in every page before its own scripts: records every frame the page's
// sockets receive ({type, seq, call_id}), to tell replayed call frames from
// live ones, and counts the times the call panel was shown (even for a moment).
function frameRecorder() {
  window.__frames = [];
  window.__panelShown = 0;
  document.addEventListener('DOMContentLoaded', () => {
    const p = document.querySelector('[data-testid=call-panel]');
    new MutationObserver((records) => {
      for (const r of records) if (r.oldValue === null || !p.hidden) window.__panelShown++;
    }).observe(p, { attributes: true, attributeFilter: ['hidden'], attributeOldValue: true });
  });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        try {
          const f = JSON.parse(ev.data);
          window.__frames.push({ type: f.type, seq: f.seq, call_id: f.call_id, t: Date.now() });
        } catch { /* not JSON */ }
      });
    }
  };
}

let browser, A, B;
const pageErrors = [];
let finished = false;

const panel = '[data-testid=call-panel]';
const status = (page) => page.textContent('[data-testid=call-status]');
const panelShown = (page, timeout = 5000) => page.waitForSelector(`${panel}:not([hidden])`, { timeout });
const panelGone = (page, timeout = 5000) => page.waitForSelector(`${panel}[hidden]`, { state: 'attached', timeout });
const waitLive = (page, timeout = 10000) =>
  page.waitForFunction(() => document.querySelector('[data-testid=conn-state]').textContent === 'live', null, { timeout });
const seconds = (text) => {
  const m = /^(\d+):(\d\d)$/.exec(text.trim());
  assert.ok(m, `"${text}" is not m:ss`);
  return Number(m[1]) * 60 + Number(m[2]);
};
// The inbound RTP byte counts of the page's current peer connection, by kind.
const inbound = (page) => page.evaluate(async () => {
  const out = { audio: 0, video: 0 };
  const pc = window.vatoCall.pc;
  if (!pc) return out;
  for (const r of (await pc.getStats()).values()) {
    if (r.type === 'inbound-rtp') out[r.kind] += r.bytesReceived || 0;
  }
  return out;
});

async function sideBySide(fa, fb, out) {
  const ctx = await browser.newContext({ viewport: { width: 1100 + 390 + 48, height: 860 } });
  const p = await ctx.newPage();
  const img = (f) => `<img style="border:1px solid #ccc;vertical-align:top" src="data:image/png;base64,${fs.readFileSync(f).toString('base64')}">`;
  await p.setContent(`<body style="margin:0;padding:8px;background:#888;display:flex;gap:16px">${img(fa)}${img(fb)}</body>`);
  await p.screenshot({ path: out, fullPage: true });
  await ctx.close();
}

describe('calls in a real browser', () => {
  before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run',
        // A fake camera (a test pattern) and microphone (a beep), no permission prompt.
        '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
        // Host candidates on the loopback interface too, for machines without another one.
        '--allow-loopback-in-peer-connection'],
    });
    const perms = { permissions: ['camera', 'microphone'] };
    const ctxA = await browser.newContext({ ...perms, viewport: { width: 1100, height: 720 } });
    const ctxB = await browser.newContext({ ...perms, viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    for (const ctx of [ctxA, ctxB]) await ctx.addInitScript(frameRecorder);
    A = await ctxA.newPage();
    B = await ctxB.newPage();
    for (const [name, p] of [['A', A], ['B', B]]) {
      p.setDefaultTimeout(10000);
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log(`[${name} console] ${m.text()}`); });
    }
  });

  after(async () => {
    if (!browser) return;
    // A failed step: the two windows as they were, for the artifacts.
    if (!finished && A && B) {
      fs.mkdirSync(ART, { recursive: true });
      await A.screenshot({ path: path.join(ART, 'call-failed-lalo.png') }).catch(() => {});
      await B.screenshot({ path: path.join(ART, 'call-failed-kalu.png') }).catch(() => {});
    }
    await browser.close();
  });

  let cid;
  it('logs in the demo users and opens their direct conversation; the call buttons show', async () => {
    for (const [page, u] of [[A, users.a], [B, users.b]]) {
      await page.goto(BASE + '/');
      await page.fill('[data-testid=login-username]', u.username);
      await page.fill('[data-testid=login-password]', u.password);
      await page.click('[data-testid=login-submit]');
      await page.waitForFunction((n) => document.querySelector('[data-testid=me-name]').textContent === n, u.username);
      u.id = await page.evaluate(() => JSON.parse(atob(localStorage.getItem('vato.access').split('.')[1]
        .replace(/-/g, '+').replace(/_/g, '/'))).user_id);
    }
    cid = await A.evaluate(async (other) => {
      const r = await fetch('/api/chat/conversations/', { headers: { Authorization: 'Bearer ' + localStorage.getItem('vato.access') } });
      const c = (await r.json()).find((x) => x.conversation_type === 'direct' && x.members.some((m) => m.user.id === other));
      return c && c.id;
    }, users.b.id);
    assert.ok(cid > 0, 'the demo users share no direct conversation (is the server started with --demo?)');
    for (const p of [A, B]) {
      await p.click(`[data-testid=conv-item][data-conv-id="${cid}"]`);
      await waitLive(p);
      for (const b of ['call-voice', 'call-video', 'call-log-open']) {
        assert.equal(await p.isVisible(`[data-testid=${b}]`), true, `${b} is not visible`);
        // On the phone too the buttons fit in the header.
        const box = await p.locator(`[data-testid=${b}]`).boundingBox();
        assert.ok(box.x >= 0 && box.x + box.width <= p.viewportSize().width, `${b} is outside the window: ${JSON.stringify(box)}`);
      }
      assert.equal(await p.isVisible(panel), false);
    }
  });

  let callId;
  it('a video call: lalo calls, kalu answers, both peer connections reach "connected" and media flows', async () => {
    await A.click('[data-testid=call-video]');
    await panelShown(A);
    assert.match(await status(A), /^(Calling|Ringing) kalu…$/);
    await panelShown(B);
    assert.equal(await status(B), 'Incoming video call from lalo');
    callId = Number(await B.getAttribute(panel, 'data-call-id'));
    assert.ok(callId > 0);
    assert.equal(Number(await A.getAttribute(panel, 'data-call-id')), callId);
    assert.equal(await B.isVisible('[data-testid=call-answer]'), true);
    assert.equal(await B.isVisible('[data-testid=call-decline]'), true);
    assert.equal(await A.isVisible('[data-testid=call-hangup]'), true);
    fs.mkdirSync(ART, { recursive: true });
    await B.screenshot({ path: path.join(ART, 'call-incoming-kalu.png') });

    const t0 = Date.now();
    await B.click('[data-testid=call-answer]');
    // Both RTCPeerConnections connected: the panel's data-pc-state mirrors
    // pc.connectionState, and the pc itself says so.
    for (const p of [A, B]) {
      await p.waitForFunction(() => document.querySelector('[data-testid=call-panel]').dataset.pcState === 'connected',
        null, { timeout: CONNECT_MS });
      assert.equal(await p.evaluate(() => window.vatoCall.pc.connectionState), 'connected');
      assert.equal(await p.evaluate(() => window.vatoCall.state), 'connected');
      assert.equal(await status(p), 'Connected');
    }
    console.log(`answer to both connected: ${Date.now() - t0} ms`);
    // Each window plays the other's camera (decoded frames, growing RTP counters).
    for (const p of [A, B]) {
      await p.waitForFunction(() => {
        const v = document.querySelector('[data-testid=call-remote-video]');
        return v.videoWidth > 0 && v.currentTime > 0;
      }, null, { timeout: 10000 });
    }
    const before = [await inbound(A), await inbound(B)];
    await A.waitForTimeout(2500); // the call runs for a while
    const later = [await inbound(A), await inbound(B)];
    for (const i of [0, 1]) {
      assert.ok(later[i].video > before[i].video, `video bytes did not grow in window ${'AB'[i]}: ${JSON.stringify([before[i], later[i]])}`);
      assert.ok(later[i].audio > before[i].audio, `audio bytes did not grow in window ${'AB'[i]}: ${JSON.stringify([before[i], later[i]])}`);
    }
    for (const p of [A, B]) {
      assert.ok(seconds(await p.textContent('[data-testid=call-timer]')) >= 2, 'the timer shows less than 2 s');
    }
    await A.screenshot({ path: path.join(ART, 'call-lalo.png') });
    await B.screenshot({ path: path.join(ART, 'call-kalu.png') });
    await sideBySide(path.join(ART, 'call-lalo.png'), path.join(ART, 'call-kalu.png'), path.join(ART, 'call-both-windows.png'));
  });

  it('kalu hangs up: both windows close the call, its peer connection and its camera', async () => {
    await B.click('[data-testid=call-hangup]');
    for (const p of [A, B]) {
      await panelGone(p);
      const last = await p.evaluate(() => ({
        state: window.vatoCall.state,
        id: window.vatoCall.last && window.vatoCall.last.id,
        pc: window.vatoCall.last && window.vatoCall.last.pc && window.vatoCall.last.pc.connectionState,
        tracks: window.vatoCall.last && window.vatoCall.last.stream.getTracks().map((t) => t.readyState),
      }));
      assert.deepEqual(last, { state: 'idle', id: callId, pc: 'closed', tracks: ['ended', 'ended'] });
    }
  });

  it('the call log shows the call as ended, with its duration', async () => {
    for (const p of [A, B]) {
      await p.click('[data-testid=call-log-open]');
      const item = `[data-testid=call-log-item][data-call-id="${callId}"]`;
      await p.waitForSelector(item);
      await p.waitForFunction((sel) => document.querySelector(sel).dataset.state === 'ended', item);
      assert.equal(await p.textContent(`${item} [data-testid=call-log-state]`), 'ended');
      assert.equal(await p.textContent(`${item} [data-testid=call-log-type]`), 'Video');
      const secs = seconds(await p.textContent(`${item} [data-testid=call-log-duration]`));
      console.log(`call log duration: ${secs} s`);
      assert.ok(secs >= 1 && secs < 60, `duration ${secs} s`);
    }
    assert.match(await A.textContent(`[data-testid=call-log-item][data-call-id="${callId}"]`), /You called/);
    assert.match(await B.textContent(`[data-testid=call-log-item][data-call-id="${callId}"]`), /lalo called/);
    await A.screenshot({ path: path.join(ART, 'call-log-lalo.png') });
  });

  let declinedId;
  it('a voice call to a window on its conversation list: it shows there, rings when opened, and is declined', async () => {
    // kalu goes back to the list (no socket for the conversation now).
    await B.click('[data-testid=back]');
    await B.waitForSelector(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    await A.click('[data-testid=call-voice]');
    await panelShown(A);
    await A.waitForFunction(() => Number(document.querySelector('[data-testid=call-panel]').dataset.callId) > 0);
    declinedId = Number(await A.getAttribute(panel, 'data-call-id'));
    assert.ok(declinedId > callId);
    // The list polls the ringing calls every 10 s.
    await B.waitForSelector(`[data-testid=conv-item][data-conv-id="${cid}"] [data-testid=conv-ringing]`, { timeout: 15000 });
    await B.click(`[data-testid=conv-item][data-conv-id="${cid}"]`);
    // Opening it replays the call's frames (not ringing from those), then asks
    // which calls still ring: this one.
    await panelShown(B);
    assert.equal(await status(B), 'Incoming call from lalo');
    await B.click('[data-testid=call-decline]');
    await panelGone(B);
    await panelGone(A);
    // The caller's log (still open) shows it declined, no duration.
    const item = `[data-testid=call-log-item][data-call-id="${declinedId}"]`;
    await A.waitForFunction((sel) => { const n = document.querySelector(sel); return n && n.dataset.state === 'declined'; }, item);
    assert.equal(await A.textContent(`${item} [data-testid=call-log-type]`), 'Voice');
    assert.equal(seconds(await A.textContent(`${item} [data-testid=call-log-duration]`)), 0);
  });

  it('a reload replays the old call frames but nothing rings', async () => {
    await B.reload();
    await waitLive(B);
    await B.waitForFunction(() => window.__frames.some((f) => f.type === 'sync.done'));
    const replayed = await B.evaluate(() => window.__frames.filter((f) => f.type === 'call.incoming').map((f) => f.call_id));
    for (const id of [callId, declinedId]) assert.ok(replayed.includes(id), `the replay did not bring call ${id}'s call.incoming back: ${replayed}`);
    // Past the check of the active calls that follows sync.done.
    await B.waitForTimeout(1500);
    assert.equal(await B.isVisible(panel), false);
    assert.equal(await B.evaluate(() => window.__panelShown), 0, 'the call panel showed (rang) during the replay');
    assert.equal(await B.evaluate(() => window.vatoCall.state), 'idle');
  });

  it('raised no error in either page', () => {
    assert.deepEqual(pageErrors, []);
    finished = true;
  });
});
