// End-to-end: a brand manager adds a brand and its logo on the dashboard's Brands page (the logo is
// shown), a stream runs the logo matcher and brand rules, and the player page describes the
// picture on screen — "On screen now" names the brand exactly while the picture shows its mark,
// although the newest results run seconds ahead of the picture — shows the brand's alert on the
// timeline and in the list (a click plays from it), and charts the brand report, downloadable as CSV.
//
// The publisher draws the Coca-Cola mark (from the fixtures) on a photo during 4 s of every 8 s and
// burns each frame's number into the picture, so the test reads which frame is on screen from its
// pixels.
//
//   MA_BIN=… MA_DASHBOARD=… node --test brands.test.mjs
//
// Optional: MA_BRANDS_SCREENSHOT (PNG path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, FRAME_NUMBER_STRIP, MA_BIN, MA_DASHBOARD, PHOTO, STRIP_FPS, bounded, launch, readShownFrame, sleep, startServer,
} from './support.mjs';

const OVERALL_MS = 150_000;
const LOGO = path.join(path.dirname(PHOTO), 'logos/cocacola.svg');
const ASTRONAUT = path.join(path.dirname(PHOTO), 'astronaut.png');
/** The mark is on screen while mod(t, PERIOD) >= PERIOD / 2. */
const PERIOD_S = 8;
const markShown = (t) => t % PERIOD_S >= PERIOD_S / 2;
/** Seconds from t to the nearest change of the mark. */
const toChange = (t) => {
  const r = t % (PERIOD_S / 2);
  return Math.min(r, PERIOD_S / 2 - r);
};

test('the brand catalogue, alerts and brand report on the dashboard, and On screen now in sync with the picture', { timeout: OVERALL_MS + 15_000 }, async (t) => {
  assert.ok(MA_BIN && existsSync(MA_BIN), `set MA_BIN to the media-analyzer binary (got ${MA_BIN})`);
  assert.ok(existsSync(path.join(MA_DASHBOARD, 'index.html')), `no dashboard build in ${MA_DASHBOARD}`);
  for (const file of [LOGO, ASTRONAUT]) assert.ok(existsSync(file), `no ${file} (run scripts/fetch-models)`);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ma-brands-'));
  const screenshot = process.env.MA_BRANDS_SCREENSHOT || path.join(dataDir, '..', `ma-brands-${process.pid}.png`);
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

    // The mark in Coca-Cola red, 80 px tall, with alpha.
    const mark = path.join(dataDir, 'mark.png');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-width', '80', '-height', '80', '-i', LOGO,
      '-vf', 'lutrgb=r=244:g=0:b=0', mark]);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
    page = await context.newPage();
    await page.goto(`${httpBase}/brands?key=${encodeURIComponent(info.apiKey)}`, { waitUntil: 'domcontentloaded' });

    // The catalogue: add the brand, upload its logo, and see the logo.
    await page.locator('[data-testid=no-brands]').waitFor({ timeout: 15_000 });
    await page.locator('[data-testid=brand-name]').fill('Coca-Cola');
    await page.locator('[data-testid=brand-aliases]').fill('Coke');
    await page.locator('[data-testid=brand-add]').click();
    const card = page.locator('[data-brand="brand:cocacola"]');
    await card.waitFor({ timeout: 10_000 });
    await card.locator('[data-testid=logo-file]').setInputFiles(LOGO);
    const image = card.locator('img[data-testid=logo-image]');
    await image.waitFor({ timeout: 10_000 });
    await page.waitForFunction(
      () => document.querySelector('[data-brand="brand:cocacola"] img')?.naturalWidth > 0,
      null,
      { timeout: 10_000 },
    );
    t.diagnostic(`logo shown: ${await image.evaluate((img) => `${img.naturalWidth}x${img.naturalHeight}`)}`);

    // The stream runs the logo matcher, and brand rules alert after 1 s on screen.
    const streams = await api('GET', '/streams');
    const stream = streams.streams[0].id;
    await api('PUT', `/streams/${stream}/pipeline`, {
      detector: [{ name: 'logo-matcher' }],
      trigger: [{ name: 'brand-rules', config: { 'min-seconds': '1', 'cooldown-seconds': '600' } }],
    });
    const publisher = launch('ffmpeg', 'ffmpeg', [
      '-hide_banner', '-loglevel', 'error', '-re',
      '-framerate', String(STRIP_FPS), '-loop', '1', '-i', ASTRONAUT,
      '-framerate', String(STRIP_FPS), '-loop', '1', '-i', mark,
      '-t', '75', '-filter_complex',
      `[0]scale=640:360,setsar=1,${FRAME_NUMBER_STRIP}[bg];` +
        `[bg][1]overlay=x=400:y=20:enable='gte(mod(t,${PERIOD_S}),${PERIOD_S / 2})',format=yuv420p`,
      '-r', String(STRIP_FPS), '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60',
      '-f', 'flv', `rtmp://${rtmp.hostname}:${rtmp.port}/live/${info.streamKey}`,
    ]);
    procs.push(publisher);

    await page.goto(`${httpBase}/streams/${stream}`, { waitUntil: 'domcontentloaded' });
    const onScreen = page.locator('[data-testid=on-screen]');
    await page.waitForFunction(
      () => document.querySelector('[data-testid=on-screen]')?.textContent.includes('brand:cocacola'),
      null,
      { timeout: 45_000, polling: 100 },
    );

    // Scene metrics: the panel shows the frame's brightness and colours, and charts the recent
    // frames' brightness.
    await page.waitForFunction(
      () => {
        const s = document.querySelector('[data-testid=scene]');
        const line = s?.querySelector('polyline.brightness')?.getAttribute('points') ?? '';
        return !!s && s.textContent.includes('light') && s.querySelectorAll('.swatch').length > 0 &&
          line.split(' ').length >= 2;
      },
      null,
      { timeout: 20_000, polling: 200 },
    );
    t.diagnostic(`scene panel: ${(await page.locator('[data-testid=scene]').textContent()).trim()}`);

    // In sync: sample the frame on screen (from its pixels) and the panel together, away from the
    // mark's changes (an analysed frame describes the picture until the next one, up to 1 s).
    const samples = [];
    for (let i = 0; i < 140; i++) {
      const s = await page.evaluate(`(() => ({
        shown: (${readShownFrame})(),
        text: document.querySelector('[data-testid=on-screen]').textContent,
      }))()`);
      if (s.shown !== null) {
        const seconds = s.shown / STRIP_FPS;
        if (toChange(seconds) > 1.2) {
          samples.push({ seconds, expected: markShown(seconds), said: s.text.includes('brand:cocacola') });
        }
      }
      await sleep(200);
    }
    const agree = samples.filter((s) => s.expected === s.said).length;
    const shownCount = samples.filter((s) => s.expected).length;
    t.diagnostic(`On screen now agreed with the picture in ${agree}/${samples.length} samples ` +
      `(${shownCount} with the mark on screen); ` +
      `the player ${(await page.locator('[data-testid=latency]').textContent()).trim()} behind live`);
    assert.ok(samples.length >= 30, `too few samples with a readable frame number (${samples.length})`);
    assert.ok(shownCount >= 10 && samples.length - shownCount >= 10, 'samples cover both the mark on and off screen');
    assert.ok(agree >= 0.9 * samples.length,
      `"On screen now" disagreed with the picture: ${JSON.stringify(samples.filter((s) => s.expected !== s.said).slice(0, 5))}`);
    assert.ok((await onScreen.textContent()).trim().length > 0);

    // The alert: in the list and on the timeline; a click on its mark plays from it.
    const item = page.locator('.alert-list li[data-severity]').first();
    await item.waitFor({ timeout: 20_000 });
    assert.match(await item.textContent(), /cocacola|Coca-Cola/i);
    const markButton = page.locator('[data-testid=alert-timeline] .mark').first();
    await markButton.waitFor({ timeout: 20_000 });
    const before = await page.evaluate(() => document.querySelector('video#player').currentTime);
    await markButton.click();
    await sleep(300);
    const after = await page.evaluate(() => document.querySelector('video#player').currentTime);
    t.diagnostic(`played from the alert: ${before.toFixed(1)} s -> ${after.toFixed(1)} s`);
    assert.ok(after < before - 1, `a click on the alert seeks back to it (${before} -> ${after})`);

    // The brand report: a bar for the brand, and its CSV.
    const bar = page.locator('[data-testid=brand-report] .bar-row[data-brand="cocacola"]');
    await bar.waitFor({ timeout: 20_000 });
    assert.match(await bar.textContent(), /Coca-Cola/);
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 10_000 }),
      page.locator('[data-testid=report-csv]').click(),
    ]);
    const csv = await readFile(await download.path(), 'utf8');
    assert.match(csv.split(/\r?\n/)[0], /^brand,name,in_catalogue,screen_time_s/);
    assert.match(csv, /\ncocacola,Coca-Cola,true,/);
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
