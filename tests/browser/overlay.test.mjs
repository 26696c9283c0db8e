// End-to-end: an RTMP stream of a photo with a cup → live analysis → events WebSocket → the
// dashboard's overlay canvas in headless Chromium. Checks that a box is drawn where the cup is
// (pixels on the canvas), and that what is drawn belongs to the frame on screen (never a frame
// from the future, and at most a few frames old). Which frame is on screen is read from the
// picture itself: the publisher burns each frame's number into a strip of 12 black/white blocks
// (bit k at x = 48k), so the check does not trust the overlay's own idea of the time.
//
//   MA_BIN=… MA_DASHBOARD=… node --test overlay.test.mjs
//
// Optional: MA_PHOTO (default ~/.cache/media-analyzer/fixtures/coffee.png, from scripts/fetch-models),
// MA_OVERLAY_SCREENSHOT (PNG path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, FRAME_NUMBER_STRIP, MA_BIN, MA_DASHBOARD, OVERALL_MS, PHOTO, STRIP_FPS, bounded, launch, readShownFrame, sleep, startServer,
} from './support.mjs';

const FPS = STRIP_FPS;

test('overlay boxes are drawn where the objects are, on the frame they belong to', { timeout: OVERALL_MS + 15_000 }, async (t) => {
  assert.ok(MA_BIN && existsSync(MA_BIN), `set MA_BIN to the media-analyzer binary (got ${MA_BIN})`);
  assert.ok(existsSync(path.join(MA_DASHBOARD, 'index.html')), `no dashboard build in ${MA_DASHBOARD}`);
  assert.ok(existsSync(PHOTO), `no test photo at ${PHOTO} (run scripts/fetch-models)`);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ma-overlay-'));
  const screenshot = process.env.MA_OVERLAY_SCREENSHOT || path.join(dataDir, '..', `ma-overlay-${process.pid}.png`);
  const procs = [];
  let browser = null;
  let page = null;

  const body = async () => {
    const { httpBase, rtmp, ...info } = await startServer(procs, dataDir);
    const publisher = launch('ffmpeg', 'ffmpeg', [
      '-hide_banner', '-loglevel', 'error', '-re', '-framerate', String(FPS), '-loop', '1', '-i', PHOTO, '-t', '40',
      '-vf', `scale=640:360,${FRAME_NUMBER_STRIP},format=yuv420p`, '-r', String(FPS),
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60',
      '-f', 'flv', `rtmp://${rtmp.hostname}:${rtmp.port}/live/${info.streamKey}`,
    ]);
    procs.push(publisher);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await page.goto(`${httpBase}/?key=${encodeURIComponent(info.apiKey)}`, { waitUntil: 'domcontentloaded' });
    const row = page.locator('a.stream-row[data-state="live"]').first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await row.click();
    await page.waitForURL(/\/streams\/[^/]+$/, { timeout: 10_000 });

    // Wait for a cup box on the canvas.
    await page.waitForFunction(
      () => {
        const c = document.querySelector('canvas[data-testid="overlay"]');
        return !!c && (c.dataset.boxes || '').includes('"cup"');
      },
      null,
      { timeout: 45_000, polling: 100 },
    );

    // Where it is: the cup's box, relative to the picture, is in the middle of coffee.png.
    const seen = await page.evaluate(() => {
      const c = document.querySelector('canvas[data-testid="overlay"]');
      const v = document.querySelector('video#player');
      const boxes = JSON.parse(c.dataset.boxes);
      const cup = boxes.find((b) => b.label === 'cup');
      const dpr = window.devicePixelRatio || 1;
      const ctx = c.getContext('2d');
      const alpha = (x, y) => ctx.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data[3];
      return {
        cup,
        canvas: { w: c.clientWidth, h: c.clientHeight },
        video: { w: v.videoWidth, h: v.videoHeight },
        // The box's left and right edges at mid-height are painted; its centre is not.
        edgeLeft: alpha(cup.x, cup.y + cup.h / 2),
        edgeRight: alpha(cup.x + cup.w, cup.y + cup.h / 2),
        inside: alpha(cup.x + cup.w / 2, cup.y + cup.h / 2),
      };
    });
    t.diagnostic(`cup box ${JSON.stringify(seen.cup)} on a ${seen.canvas.w}x${seen.canvas.h} canvas`);
    const cx = (seen.cup.x + seen.cup.w / 2) / seen.canvas.w;
    const cy = (seen.cup.y + seen.cup.h / 2) / seen.canvas.h;
    assert.ok(cx > 0.2 && cx < 0.8 && cy > 0.2 && cy < 0.8, `cup centre at ${cx.toFixed(2)},${cy.toFixed(2)}`);
    assert.ok(seen.cup.w > 0.1 * seen.canvas.w, 'cup box too small');
    assert.ok(seen.edgeLeft > 0 && seen.edgeRight > 0, `box edges not painted: ${seen.edgeLeft}, ${seen.edgeRight}`);
    assert.equal(seen.inside, 0, 'the inside of the box should stay clear');

    // When: while it plays, read the number of the frame on screen from its pixels and, in the same
    // task, the PTS of the analysed frame whose boxes are drawn; the publisher's frame n has PTS
    // round(n × 1000 / 30) ms. Lag = shown − drawn, in frames.
    // Samples without boxes or a readable number (a frame mid-decode on a loaded machine) are
    // skipped: sample until there are 20, for at most 150 tries.
    const lags = [];
    for (let i = 0; i < 150 && lags.length < 20; i++) {
      const s = await page.evaluate(`(() => {
        const c = document.querySelector('canvas[data-testid="overlay"]');
        const drawn = c.dataset.drawnPts === '' ? null : Number(c.dataset.drawnPts);
        return { shown: (${readShownFrame})(), drawn };
      })()`);
      if (s.drawn !== null && s.shown !== null) lags.push(s.shown - Math.round((s.drawn * FPS) / 1000));
      await sleep(100);
    }
    lags.sort((a, b) => a - b);
    const median = lags[lags.length >> 1];
    t.diagnostic(`shown − drawn frame: min ${lags[0]}, median ${median}, max ${lags[lags.length - 1]} over ${lags.length} samples`);
    assert.ok(lags.length >= 20, `too few samples with boxes and a readable frame number (${lags.length})`);
    assert.ok(lags[0] >= 0, `boxes of a later frame were drawn (${-lags[0]} frames ahead of the picture)`);
    assert.ok(median <= 2, `boxes lag the picture by ${median} frames (median)`);
    assert.ok(lags[lags.length - 1] <= 5, `boxes ${lags[lags.length - 1]} frames older than the picture were shown`);
    await page.screenshot({ path: screenshot });
    t.diagnostic(`screenshot: ${screenshot}`);
  };

  await bounded({
    limitMs: OVERALL_MS,
    body,
    procs,
    dataDir,
    screenshot,
    browser: () => browser,
    page: () => page,
  });
});
