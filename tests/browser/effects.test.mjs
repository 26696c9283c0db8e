// End-to-end: a stream with privacy-blur in its pipeline gets an effects rendition, and the
// dashboard's player plays it (Original ↔ Effects) in headless Chromium: its segments come from
// /hls/{id}/effects/ and the video's time advances.
//
//   MA_BIN=path/to/media-analyzer MA_DASHBOARD=frontend/dist/media-analyzer/browser node --test effects.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, MA_BIN, MA_DASHBOARD, OVERALL_MS, PHOTO, bounded, launch, sleep, startServer } from './support.mjs';

const ASTRONAUT = path.join(path.dirname(PHOTO), 'astronaut.png');

test('the player plays the effects rendition', { timeout: OVERALL_MS + 15_000 }, async (t) => {
  assert.ok(MA_BIN && existsSync(MA_BIN), `MA_BIN not found: ${MA_BIN}`);
  assert.ok(existsSync(path.join(MA_DASHBOARD, 'index.html')), `no dashboard build in ${MA_DASHBOARD}`);
  assert.ok(existsSync(ASTRONAUT), `no ${ASTRONAUT} (run scripts/fetch-models)`);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ma-effects-'));
  const screenshot = process.env.MA_EFFECTS_SCREENSHOT || path.join(dataDir, '..', `ma-effects-${process.pid}.png`);
  const procs = [];
  let browser = null;
  let page = null;

  const body = async () => {
    const { httpBase, rtmp, ...info } = await startServer(procs, dataDir);
    const api = async (method, route, json) => {
      const res = await fetch(`${httpBase}/api/v1${route}`, {
        method,
        headers: { authorization: `Bearer ${info.apiKey}`, 'content-type': 'application/json' },
        body: json === undefined ? undefined : JSON.stringify(json),
      });
      const text = await res.text();
      assert.ok(res.ok, `${method} ${route}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    const stream = (await api('GET', '/streams')).streams[0].id;
    await api('PUT', `/streams/${stream}/pipeline`, { effects: [{ name: 'privacy-blur' }] });
    procs.push(launch('ffmpeg', 'ffmpeg', [
      '-hide_banner', '-loglevel', 'error', '-re', '-framerate', '30', '-loop', '1', '-i', ASTRONAUT,
      '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
      '-t', '70', '-vf', 'scale=640:360,setsar=1,format=yuv420p', '-r', '30',
      '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60', '-c:a', 'aac', '-b:a', '64k',
      '-f', 'flv', `rtmp://${rtmp.hostname}:${rtmp.port}/live/${info.streamKey}`,
    ]));

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    const effectsSegments = [];
    page.on('response', (r) => {
      if (/\/effects\/seg-\d+\.ts/.test(r.url())) effectsSegments.push(r.status());
    });
    await page.goto(`${httpBase}/streams/${stream}?key=${encodeURIComponent(info.apiKey)}`, { waitUntil: 'domcontentloaded' });
    const toggle = page.locator('[data-testid=rendition-effects]');
    await toggle.waitFor({ timeout: 30_000 });
    // The rendition starts with the stream's segment after its first analysed frame.
    const playlist = `${httpBase}/hls/${stream}/effects/index.m3u8`;
    for (let i = 0; ; i++) {
      const res = await fetch(playlist, { headers: { authorization: `Bearer ${info.apiKey}` } });
      if (res.ok && (await res.text()).split('\n').filter((l) => l.startsWith('seg-')).length >= 2) break;
      assert.ok(i < 120, 'the effects rendition never listed two segments');
      await sleep(500);
    }
    await toggle.click();
    await page.waitForFunction(
      () => document.querySelector('[data-testid=rendition-effects]')?.classList.contains('btn-active'),
      null,
      { timeout: 5_000 },
    );
    await page.waitForFunction(() => {
      const v = document.querySelector('video#player');
      return v && v.videoWidth > 0 && v.currentTime > 0;
    }, null, { timeout: 30_000, polling: 200 });
    const start = await page.evaluate(() => document.querySelector('video#player').currentTime);
    await page.waitForFunction(
      (from) => document.querySelector('video#player').currentTime > from + 2,
      start,
      { timeout: 30_000, polling: 200 },
    );
    const size = await page.evaluate(() => {
      const v = document.querySelector('video#player');
      return `${v.videoWidth}x${v.videoHeight}`;
    });
    t.diagnostic(`effects rendition playing at ${size}; ${effectsSegments.length} segments fetched`);
    assert.ok(effectsSegments.length >= 1 && effectsSegments.every((s) => s === 200), `segments: ${effectsSegments}`);
    await page.screenshot({ path: screenshot });
    t.diagnostic(`screenshot: ${screenshot}`);
  };

  await bounded({ limitMs: OVERALL_MS, body, procs, dataDir, screenshot, browser: () => browser, page: () => page });
});
