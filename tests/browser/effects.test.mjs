// End-to-end: a stream with privacy-blur in its pipeline gets an effects rendition, and the
// dashboard's player plays it (Original ↔ Effects) in headless Chromium: its segments come from
// /hls/{id}/effects/ and the video's time advances. Then the WebGL2 preview (Preview) draws the
// original through the generated GLSL: blurred where the analysed frame's effects say, with
// Chromium's software GL.
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

    // WebGL2 without a GPU: Chromium's software GL (SwiftShader).
    const args = [...CHROMIUM_ARGS, '--enable-unsafe-swiftshader', '--use-angle=swiftshader'];
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 30_000 });
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
    // The WebGL2 preview: the original drawn through the generated GLSL with the analysed
    // frames' blurs. Its pixels are smooth in the blurred regions and the original's elsewhere.
    await page.locator('[data-testid=rendition-preview]').click();
    await page.waitForFunction(() => {
      const c = document.querySelector('canvas[data-testid=preview]');
      return c && c.width > 0 && c.dataset.drawnSeq && JSON.parse(c.dataset.blurred || '[]').length > 0;
    }, null, { timeout: 30_000, polling: 200 });
    const check = await page.evaluate(() => {
      const video = document.querySelector('video#player');
      const preview = document.querySelector('canvas[data-testid=preview]');
      const [x, y, w, h] = JSON.parse(preview.dataset.blurred)[0].map(Math.round);
      const read = (source) => {
        const c = document.createElement('canvas');
        c.width = preview.width;
        c.height = preview.height;
        const ctx = c.getContext('2d', { willReadFrequently: true });
        ctx.drawImage(source, 0, 0, c.width, c.height);
        return ctx;
      };
      // Detail: mean absolute second difference along rows of the green channel.
      const detail = (ctx, bx, by, bw, bh) => {
        const d = ctx.getImageData(bx, by, bw, bh).data;
        let sum = 0;
        let n = 0;
        for (let j = 0; j < bh; j++) {
          for (let i = 1; i < bw - 1; i++) {
            const at = (k) => d[(j * bw + k) * 4 + 1];
            sum += Math.abs(at(i - 1) - 2 * at(i) + at(i + 1));
            n++;
          }
        }
        return sum / n;
      };
      const shown = read(preview);
      const original = read(video);
      const inset = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
      const fx = inset(x + Math.round(w / 4), 0, preview.width - 2);
      const fy = inset(y + Math.round(h / 4), 0, preview.height - 2);
      const fw = Math.max(3, Math.min(Math.round(w / 2), preview.width - fx));
      const fh = Math.max(1, Math.min(Math.round(h / 2), preview.height - fy));
      // A strip away from the faces (the bottom fifth) for "unchanged elsewhere".
      const sy = Math.round(preview.height * 0.8);
      const sh = preview.height - sy;
      const a = shown.getImageData(0, sy, preview.width, sh).data;
      const b = original.getImageData(0, sy, preview.width, sh).data;
      let diff = 0;
      for (let i = 0; i < a.length; i += 4) diff += Math.abs(a[i + 1] - b[i + 1]);
      return {
        size: `${preview.width}x${preview.height}`,
        face: [fx, fy, fw, fh],
        blurred: detail(shown, fx, fy, fw, fh),
        sharp: detail(original, fx, fy, fw, fh),
        elsewhere: diff / (a.length / 4),
      };
    });
    t.diagnostic(`preview ${JSON.stringify(check)}`);
    assert.ok(check.sharp > 1, `the original face has no detail to compare: ${JSON.stringify(check)}`);
    assert.ok(check.blurred < check.sharp / 3, `the preview does not blur the face: ${JSON.stringify(check)}`);
    assert.ok(check.elsewhere < 12, `the preview changes the picture away from the faces: ${JSON.stringify(check)}`);
    await page.screenshot({ path: screenshot });
    t.diagnostic(`screenshot: ${screenshot}`);
  };

  await bounded({ limitMs: OVERALL_MS, body, procs, dataDir, screenshot, browser: () => browser, page: () => page });
});
