// End-to-end: the dashboard's recovery paths in headless Chromium against the real server.
// Playback tokens live 12 s here (`playback_token_seconds`), so within one run:
//  - the player renews its token before it expires, and HLS requests switch to the new one while
//    the video keeps playing past the first token's expiry;
//  - an events socket whose token expires is closed by the server, and the dashboard reconnects
//    with a fresh token and `since` = the last frame it saw;
//  - a socket dropped under it (closed by the test, between the page and the server) is reopened
//    with `since` too;
// and across all of it the page receives every frame the server stored (checked against the
// detections API), none twice on one socket.
//
//   MA_BIN=… MA_DASHBOARD=… node --test recovery.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, MA_BIN, MA_DASHBOARD, OVERALL_MS, PHOTO, launch, sleep, startServer } from './support.mjs';

const TOKEN_SECONDS = 12;

/** Waits until `check()` is truthy (polling every 100 ms), or fails with `what`. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

test('the dashboard renews tokens, reconnects dropped sockets and misses no stored frame', { timeout: OVERALL_MS + 30_000 }, async (t) => {
  assert.ok(MA_BIN && existsSync(MA_BIN), `set MA_BIN to the media-analyzer binary (got ${MA_BIN})`);
  assert.ok(existsSync(path.join(MA_DASHBOARD, 'index.html')), `no dashboard build in ${MA_DASHBOARD}`);
  assert.ok(existsSync(PHOTO), `no test photo at ${PHOTO} (run scripts/fetch-models)`);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ma-recovery-'));
  const procs = [];
  let browser = null;
  let deadline;

  const body = async () => {
    const config = path.join(dataDir, 'config.toml');
    await writeFile(config, `playback_token_seconds = ${TOKEN_SECONDS}\n`);
    const { httpBase, rtmp, ...info } = await startServer(procs, dataDir, ['--config', config]);
    procs.push(launch('ffmpeg', 'ffmpeg', [
      '-hide_banner', '-loglevel', 'error', '-re', '-loop', '1', '-i', PHOTO, '-t', '75',
      '-vf', 'scale=640:360,format=yuv420p', '-r', '30',
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60',
      '-f', 'flv', `rtmp://${rtmp.hostname}:${rtmp.port}/live/${info.streamKey}`,
    ]));

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();

    // Every events socket goes through the test, which sees what the page is sent and can drop it.
    const sockets = [];
    await page.routeWebSocket(/\/api\/v1\/streams\/[^/]+\/events/, (ws) => {
      const url = new URL(ws.url());
      const socket = { ws, token: url.searchParams.get('token'), since: url.searchParams.get('since'), seqs: [] };
      sockets.push(socket);
      const upstream = ws.connectToServer();
      upstream.onMessage((message) => {
        try {
          const event = JSON.parse(String(message));
          if (event.type === 'detections') socket.seqs.push(event.seq);
        } catch {
          // not JSON: passed on as it is
        }
        ws.send(message);
      });
    });
    const hlsTokens = new Set();
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/hls/') && u.searchParams.has('token')) hlsTokens.add(u.searchParams.get('token'));
    });

    await page.goto(`${httpBase}/?key=${encodeURIComponent(info.apiKey)}`, { waitUntil: 'domcontentloaded' });
    const row = page.locator('a.stream-row[data-state="live"]').first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await row.click();
    await page.waitForURL(/\/streams\/[^/]+$/, { timeout: 10_000 });
    const streamId = new URL(page.url()).pathname.split('/').pop();
    const playing = () => page.evaluate(() => document.querySelector('video#player')?.currentTime ?? 0);
    await until(async () => (await playing()) > 0.5, 30_000, 'the video to play');
    const startedAt = Date.now();
    const playedFrom = await playing();

    // A dropped socket: the page is told it closed; it reconnects with `since`.
    await until(() => sockets.length >= 1 && sockets[0].seqs.length >= 10, 30_000, 'frames on the first socket');
    const dropped = sockets.length - 1;
    await sockets[dropped].ws.close({ code: 4000, reason: 'dropped by the test' });
    const lastBeforeDrop = sockets[dropped].seqs.at(-1);
    const reopened = await until(() => sockets[dropped + 1], 10_000, 'a new socket after the drop');
    t.diagnostic(`dropped after frame ${lastBeforeDrop}; reopened with since=${reopened.since}`);
    assert.ok(reopened.since !== null, 'the reconnect resumes with since');
    assert.ok(sockets[dropped].seqs.includes(Number(reopened.since)), `since=${reopened.since} is a frame the page saw`);
    assert.ok(Number(reopened.since) >= sockets[dropped].seqs.at(-3), `since=${reopened.since} is the page's last frame (${lastBeforeDrop})`);

    // Token expiry: play on past two token lifetimes.
    const sinceDrop = Date.now();
    await until(
      () => Date.now() - sinceDrop > 2 * TOKEN_SECONDS * 1000 + 3000 && sockets.length >= dropped + 3,
      2 * TOKEN_SECONDS * 1000 + 20_000,
      'the server to close an expired socket and the page to reconnect',
    );
    const played = (await playing()) - playedFrom;
    const wall = (Date.now() - startedAt) / 1000;
    const tokens = new Set(sockets.map((s) => s.token));
    t.diagnostic(`${sockets.length} sockets with ${tokens.size} tokens; ${hlsTokens.size} HLS tokens; played ${played.toFixed(1)} s in ${wall.toFixed(1)} s`);
    assert.ok(hlsTokens.size >= 2, `the player renewed its token for HLS (${hlsTokens.size} token used)`);
    assert.ok(tokens.size >= 2, 'event sockets reconnect with fresh tokens');
    for (const s of sockets.slice(1)) assert.ok(s.since !== null, `every reconnect resumes with since (${s.since})`);
    assert.ok(played > wall - 6, `the video kept playing through the renewals (${played.toFixed(1)} s of ${wall.toFixed(1)} s)`);

    // Nothing stored was missed or repeated: every stored frame between the first and the last
    // frame the page received reached it, once.
    for (const s of sockets) assert.equal(new Set(s.seqs).size, s.seqs.length, 'a socket repeated a frame');
    const received = sockets.flatMap((s) => s.seqs);
    const first = Math.min(...received);
    const last = Math.max(...received);
    const stored = new Set();
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: '1000' });
      if (cursor) q.set('cursor', cursor);
      const res = await fetch(`${httpBase}/api/v1/streams/${streamId}/detections?${q}`, {
        headers: { authorization: `Bearer ${info.apiKey}` },
      });
      assert.equal(res.status, 200);
      const pageOf = await res.json();
      for (const d of pageOf.detections) if (d.seq >= first && d.seq <= last) stored.add(d.seq);
      cursor = pageOf.next;
    } while (cursor);
    const missed = [...stored].filter((seq) => !received.includes(seq));
    t.diagnostic(`${received.length} frames received, ${stored.size} stored frames with detections in ${first}..${last}`);
    assert.ok(stored.size >= 50, `too few stored frames to tell (${stored.size})`);
    assert.deepEqual(missed, [], 'stored frames the page never received');
  };

  try {
    await Promise.race([
      body(),
      new Promise((_, reject) => {
        deadline = setTimeout(() => reject(new Error(`overall timeout of ${OVERALL_MS + 20_000} ms`)), OVERALL_MS + 20_000);
      }),
    ]);
  } catch (err) {
    for (const p of procs) console.error(`--- ${p.name} output (tail) ---\n${p.tail()}`);
    throw err;
  } finally {
    clearTimeout(deadline);
    if (browser) await Promise.race([browser.close().catch(() => undefined), sleep(5000)]);
    for (const p of [...procs].reverse()) await p.kill();
    await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
  }
});
