// End-to-end: media-analyzer server + ffmpeg RTMP publisher + headless Chromium.
//
//   MA_BIN=path/to/media-analyzer \
//   MA_DASHBOARD=frontend/dist/media-analyzer/browser \
//   node --test play.test.mjs
//
// Optional: MA_SCREENSHOT (PNG path), CHROMIUM_PATH (default /usr/bin/chromium),
// MA_PUBLISH_SECONDS (default 20), MA_KEEP_DATA=1 (keep the temp data dir).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, MA_BIN, MA_DASHBOARD, OVERALL_MS, PUBLISH_SECONDS, launch, sleep, startServer } from './support.mjs';

test('dashboard lists a live RTMP stream and plays it', { timeout: OVERALL_MS + 15_000 }, async (t) => {
  assert.ok(MA_BIN, 'set MA_BIN to the media-analyzer binary');
  assert.ok(existsSync(MA_BIN), `MA_BIN not found: ${MA_BIN}`);
  assert.ok(
    existsSync(path.join(MA_DASHBOARD, 'index.html')),
    `no index.html in MA_DASHBOARD=${MA_DASHBOARD} (run "npx ng build" in frontend/)`,
  );
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);

  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ma-e2e-'));
  const screenshot = process.env.MA_SCREENSHOT || path.join(dataDir, '..', `ma-e2e-${process.pid}.png`);
  const procs = [];
  let browser = null;
  let page = null;
  const pageLog = [];
  let deadlineTimer;

  const body = async () => {
    const { httpBase, rtmp, ...info } = await startServer(procs, dataDir);
    const publishUrl = `rtmp://${rtmp.hostname}:${rtmp.port || 1935}/live/${info.streamKey}`;
    t.diagnostic(`server: ${httpBase}  rtmp: ${rtmp.host}`);

    // Publish in the background. A publisher that fails within a few seconds
    // (e.g. the RTMP port is printed a moment before it accepts) is retried.
    const ffmpegArgs = [
      '-hide_banner', '-loglevel', 'error', '-re',
      '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30',
      '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
      '-t', String(PUBLISH_SECONDS),
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60', '-pix_fmt', 'yuv420p',
      '-c:a', 'aac', '-b:a', '96k',
      '-f', 'flv', publishUrl,
    ];
    let stopPublishing = false;
    const publishFailed = (async () => {
      for (let attempt = 1; ; attempt++) {
        const ffmpeg = launch(`ffmpeg#${attempt}`, 'ffmpeg', ffmpegArgs);
        procs.push(ffmpeg);
        const started = Date.now();
        const { code, signal } = await ffmpeg.exited;
        if (stopPublishing || code === 0) return new Promise(() => {}); // never rejects
        if (Date.now() - started < 5000 && attempt < 4) {
          await sleep(1000);
          continue;
        }
        throw new Error(`ffmpeg publisher failed (code ${code}, signal ${signal}):\n${ffmpeg.tail(10)}`);
      }
    })();
    publishFailed.catch(() => undefined);
    /** Waits for `p`, failing fast if publishing has failed. */
    const whilePublishing = (p) => Promise.race([p, publishFailed]);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') pageLog.push(`[console.${m.type()}] ${m.text()}`);
    });
    page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) pageLog.push(`[http ${r.status()}] ${r.url().replace(/token=[^&]+/, 'token=…')}`);
    });

    // Sign in through ?key=; the dashboard must strip the key from the address bar.
    await page.goto(`${httpBase}/?key=${encodeURIComponent(info.apiKey)}`, { waitUntil: 'domcontentloaded' });
    const row = page.locator('a.stream-row[data-state="live"]').first();
    await whilePublishing(row.waitFor({ state: 'visible', timeout: 30_000 }));
    assert.ok(!page.url().includes('key='), `API key left in the URL: ${page.url()}`);
    const rowText = (await row.innerText()).replace(/\s+/g, ' ');
    t.diagnostic(`live row: ${rowText}`);

    await row.click();
    await page.waitForURL(/\/streams\/[^/]+$/, { timeout: 10_000 });

    // Wait for the <video id="player"> to actually play.
    await whilePublishing(
      page.waitForFunction(
        () => {
          const v = document.querySelector('video#player');
          return !!v && !v.paused && v.readyState >= 3 && v.currentTime > 0;
        },
        null,
        { timeout: 30_000, polling: 250 },
      ),
    );
    const state = () =>
      page.evaluate(() => {
        const v = document.querySelector('video#player');
        return { t: v.currentTime, muted: v.muted, paused: v.paused, w: v.videoWidth, h: v.videoHeight };
      });
    const first = await state();
    assert.equal(first.muted, true, 'player should start muted');
    let last = first;
    for (let i = 0; i < 16 && last.t - first.t < 2; i++) {
      await sleep(500);
      last = await state();
    }
    t.diagnostic(`currentTime ${first.t.toFixed(2)} -> ${last.t.toFixed(2)}, video ${last.w}x${last.h}`);
    assert.ok(last.t - first.t >= 2, `currentTime advanced only ${(last.t - first.t).toFixed(2)} s`);
    assert.ok(last.w > 0 && last.h > 0, 'no decoded video frames');

    await page.screenshot({ path: screenshot });
    t.diagnostic(`screenshot: ${screenshot}`);
    stopPublishing = true;
  };

  try {
    await Promise.race([
      body(),
      new Promise((_, reject) => {
        deadlineTimer = setTimeout(() => reject(new Error(`overall timeout of ${OVERALL_MS} ms`)), OVERALL_MS);
      }),
    ]);
  } catch (err) {
    if (page) {
      await page
        .screenshot({ path: screenshot, timeout: 5000 })
        .then(() => t.diagnostic(`failure screenshot: ${screenshot}`))
        .catch(() => undefined);
    }
    for (const p of procs) console.error(`--- ${p.name} output (tail) ---\n${p.tail()}`);
    if (pageLog.length) console.error(`--- browser ---\n${pageLog.slice(-40).join('\n')}`);
    throw err;
  } finally {
    clearTimeout(deadlineTimer);
    if (browser) await Promise.race([browser.close().catch(() => undefined), sleep(5000)]);
    for (const p of [...procs].reverse()) await p.kill();
    if (!process.env.MA_KEEP_DATA) await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
  }
});
