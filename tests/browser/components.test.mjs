// End-to-end: a tenant uploads its own detector on the dashboard's Components page, runs it on a
// live stream, and the stream's player page shows the new pipeline, from which frame it applies,
// and the component's detections; its activity (calls, log) shows on the Components page.
//
//   MA_BIN=path/to/media-analyzer MA_DASHBOARD=frontend/dist/media-analyzer/browser \
//   node --test components.test.mjs
//
// Optional: MA_COMPONENTS_SCREENSHOT (PNG path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, COMPONENTS_DIR, MA_BIN, MA_DASHBOARD, OVERALL_MS, bounded, launch, sleep, startServer,
} from './support.mjs';

test('a component uploaded on the dashboard runs on a live stream, and the player shows it', { timeout: OVERALL_MS + 15_000 }, async (t) => {
  assert.ok(MA_BIN && existsSync(MA_BIN), `set MA_BIN to the media-analyzer binary (got ${MA_BIN})`);
  assert.ok(existsSync(path.join(MA_DASHBOARD, 'index.html')), `no dashboard build in ${MA_DASHBOARD}`);
  const wasm = path.join(COMPONENTS_DIR, 'brand_colour.wasm');
  assert.ok(existsSync(wasm), `no ${wasm} (run scripts/build-components)`);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ma-components-'));
  const screenshot = process.env.MA_COMPONENTS_SCREENSHOT || path.join(dataDir, '..', `ma-components-${process.pid}.png`);
  const procs = [];
  let browser = null;
  let page = null;

  const body = async () => {
    const { httpBase, rtmp, ...info } = await startServer(procs, dataDir);
    // Brand red on the left half, white on the right.
    const publisher = launch('ffmpeg', 'ffmpeg', [
      '-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi',
      '-i', 'color=c=white:s=640x360:r=30,drawbox=x=0:y=0:w=320:h=360:color=0xE41E2B@1:t=fill',
      '-t', '45', '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60', '-pix_fmt', 'yuv420p',
      '-f', 'flv', `rtmp://${rtmp.hostname}:${rtmp.port}/live/${info.streamKey}`,
    ]);
    procs.push(publisher);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await page.goto(`${httpBase}/?key=${encodeURIComponent(info.apiKey)}`, { waitUntil: 'domcontentloaded' });
    await page.locator('a.stream-row[data-state="live"]').first().waitFor({ state: 'visible', timeout: 30_000 });

    // Upload it on the Components page: the name comes from the file.
    await page.locator('a.nav-link', { hasText: 'Components' }).click();
    await page.waitForURL(/\/components$/, { timeout: 10_000 });
    await page.locator('[data-testid=upload-file]').setInputFiles(wasm);
    assert.equal(await page.locator('[data-testid=upload-name]').inputValue(), 'brand-colour');
    await page.locator('[data-testid=upload]').click();
    await page.locator('[data-testid=notice]', { hasText: 'Uploaded brand-colour version 1' }).waitFor({ timeout: 20_000 });

    // Run it on the live stream (beside the bundled detectors of the stream's pipeline).
    const target = page.locator('[data-testid=run-target]');
    const streamOption = await target.locator('option', { hasText: '(live)' }).first().getAttribute('value');
    await target.selectOption(streamOption);
    await page.locator('[data-component=brand-colour] tr[data-version="1"] [data-testid=run]').click();
    const notice = page.locator('[data-testid=notice]', { hasText: 'brand-colour@1 runs on' });
    await notice.waitFor({ timeout: 20_000 });
    const said = await notice.textContent();
    t.diagnostic(said.trim());
    assert.match(said, /from frame \d+/);
    const fromFrame = Number(said.match(/from frame (\d+)/)[1]);

    // The player page: the pipeline with the upload in it, and its detections.
    await page.goto(`${httpBase}/streams/${streamOption}`, { waitUntil: 'domcontentloaded' });
    const panel = page.locator('[data-testid=pipeline]');
    await panel.filter({ hasText: 'brand-colour@1' }).waitFor({ timeout: 20_000 });
    assert.match(await panel.textContent(), /its own/);
    await page.locator('[data-testid=label-counts]', { hasText: 'colour:e41e2b' }).waitFor({ timeout: 30_000 });

    // Its activity on the Components page: calls, no failures, and the time of its calls.
    await page.goto(`${httpBase}/components`, { waitUntil: 'domcontentloaded' });
    const card = page.locator('[data-component=brand-colour]');
    await card.locator('tr[data-version="1"]', { hasText: 'main' }).waitFor({ timeout: 10_000 });
    await card.locator('[data-testid=activity-toggle]').click();
    // Counters are written every 2 s: refresh until they are there.
    const counters = card.locator('[data-testid=activity] table.counters');
    for (let i = 0; i < 15 && !(await counters.isVisible()); i++) {
      await sleep(1000);
      await card.locator('[data-testid=activity] button', { hasText: 'Refresh' }).click().catch(() => undefined);
    }
    await counters.waitFor({ timeout: 5_000 });
    const row = await counters.locator('tbody tr').first().innerText();
    t.diagnostic(`activity: ${row.replace(/\s+/g, ' ')}; pipeline applied from frame ${fromFrame}`);
    assert.match(row, /brand-colour@1\s+[1-9]\d*\s+0\s+0/);
    await page.screenshot({ path: screenshot, fullPage: true });
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
