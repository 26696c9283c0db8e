// Shared by the browser end-to-end tests: child processes in their own groups, the server's
// printed keys and addresses, and Chromium's flags.
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The server binary under test (required). */
export const MA_BIN = process.env.MA_BIN;
/** The dashboard build the server serves. */
export const MA_DASHBOARD = path.resolve(
  process.env.MA_DASHBOARD ?? path.join(HERE, '../../frontend/dist/media-analyzer/browser'),
);
/** The built guest components next to the server binary's target (scripts/build-components). */
export const COMPONENTS_DIR = MA_BIN ? path.resolve(path.dirname(MA_BIN), '../wasm32-wasip2/release') : '';
const CACHE = process.env.MEDIA_ANALYZER_CACHE || path.join(os.homedir(), '.cache/media-analyzer');
/** A photo with a cup (from scripts/fetch-models). */
export const PHOTO = process.env.MA_PHOTO || path.join(CACHE, 'fixtures/coffee.png');

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const PUBLISH_SECONDS = Number(process.env.MA_PUBLISH_SECONDS || 20);
export const OVERALL_MS = 90_000;
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

// Tolerant of log prefixes (timestamps, levels, targets) and ANSI colours.
export const RE = {
  apiKey: /API key:\s*([^\s"'`]+)/i,
  streamKey: /Stream key:\s*([^\s"'`]+)/i,
  // Scheme, host and port only (no path, no trailing punctuation).
  http: /HTTP listening on\s+(https?:\/\/[\w.\-]+(?::\d+)?|https?:\/\/\[[0-9a-fA-F:.]+\](?::\d+)?)/i,
  rtmp: /RTMP listening on\s+(rtmp:\/\/[\w.\-]+(?::\d+)?|rtmp:\/\/\[[0-9a-fA-F:.]+\](?::\d+)?)/i,
};
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;

// Last resort: never leave a child group behind, even if the runner exits abruptly.
const LIVE_GROUPS = new Set();
process.on('exit', () => {
  for (const pid of LIVE_GROUPS) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/** A child process in its own process group, with the tail of its output kept. */
export function launch(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...opts });
  const log = [];
  const listeners = new Set();
  const onLine = (line) => {
    const clean = line.replace(ANSI, '');
    log.push(clean);
    if (log.length > 400) log.shift();
    for (const l of listeners) l(clean);
  };
  for (const s of [child.stdout, child.stderr]) readline.createInterface({ input: s }).on('line', onLine);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (err) => {
      onLine(`[spawn error] ${err.message}`);
      resolve({ code: -1, signal: null });
    });
  });
  let done = false;
  if (child.pid !== undefined) LIVE_GROUPS.add(child.pid);
  exited.then(() => {
    done = true;
    LIVE_GROUPS.delete(child.pid);
  });
  return {
    name,
    child,
    log,
    exited,
    get running() {
      return !done;
    },
    onLine: (fn) => listeners.add(fn),
    tail: (n = 40) => log.slice(-n).join('\n'),
    async kill(graceMs = 3000) {
      if (done || child.pid === undefined) return;
      const signalGroup = (sig) => {
        try {
          process.kill(-child.pid, sig);
        } catch {
          try {
            child.kill(sig);
          } catch {
            /* already gone */
          }
        }
      };
      signalGroup('SIGTERM');
      const t = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Waits until the server has printed its keys and listening addresses. */
export function serverInfo(server, timeoutMs) {
  const found = {};
  return new Promise((resolve, reject) => {
    const check = (line) => {
      for (const [k, re] of Object.entries(RE)) {
        const m = found[k] ? null : line.match(re);
        if (m) found[k] = m[1];
      }
      if (Object.keys(RE).every((k) => found[k])) {
        clearTimeout(timer);
        resolve(found);
      }
    };
    const timer = setTimeout(
      () => reject(new Error(`server did not print its addresses/keys within ${timeoutMs} ms (got ${JSON.stringify(Object.keys(found))})`)),
      timeoutMs,
    );
    for (const line of server.log) check(line);
    server.onLine(check);
    server.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal})`));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * `serve` on free loopback ports with its data in `dataDir` and the dashboard, `extra` arguments
 * first; added to `procs` (for the caller's clean-up). Resolves once it has printed its keys and
 * addresses: those, `httpBase` (no trailing slash) and `rtmp` (a URL).
 */
export async function startServer(procs, dataDir, extra = []) {
  const server = launch('server', MA_BIN, [
    'serve', ...extra, '--rtmp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data', dataDir, '--dashboard', MA_DASHBOARD,
  ], { env: { ...process.env, NO_COLOR: '1' } });
  procs.push(server);
  const info = await serverInfo(server, 20_000);
  return { ...info, httpBase: info.http.replace(/\/+$/, ''), rtmp: new URL(info.rtmp) };
}


/** Frames per second of the test streams that carry their frame number. */
export const STRIP_FPS = 30;
const STRIP_BITS = 12;
/**
 * An ffmpeg filter that burns each frame's number n into the top 24 rows of a 640-wide picture:
 * 12 blocks on a black strip, block k (at x = 48k) white when bit k of n is set. Tests read the
 * number back from the picture the browser shows (`readShownFrame`), so they never trust the
 * page's own idea of which frame is on screen.
 */
export const FRAME_NUMBER_STRIP = [
  'drawbox=x=0:y=0:w=640:h=24:color=black:t=fill',
  ...Array.from({ length: STRIP_BITS }, (_, k) =>
    `drawbox=x=${k * 48 + 4}:y=4:w=40:h=16:color=white:t=fill:enable='mod(floor(n/pow(2,${k})),2)'`),
].join(',');

/**
 * In the page: the number of the frame `video#player` shows (read from its pixels), or null when
 * the picture has no strip. Pass to `page.evaluate(readShownFrame)`.
 */
export function readShownFrame() {
  const bits = 12;
  const v = document.querySelector('video#player');
  if (!v || !v.videoWidth) return null;
  const probe = (window.__frameProbe ??= document.createElement('canvas'));
  probe.width = v.videoWidth;
  probe.height = v.videoHeight;
  const ctx = probe.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(v, 0, 0);
  const row = ctx.getImageData(0, 12, probe.width, 1).data;
  let shown = 0;
  for (let k = 0; k < bits; k++) if (row[(k * 48 + 24) * 4] > 128) shown |= 1 << k;
  // The strip's gaps are black: a picture without the strip reads as no frame number.
  const strip = row[2 * 4] < 64 && row[(bits * 48 + 24) * 4] < 64;
  return strip ? shown : null;
}

/**
 * Runs a browser test's `body` within `limitMs`. On failure: a screenshot of `page()` (when the
 * test opened one) at `screenshot`, and the tail of each process's output, then the error again.
 * Always: the browser closed, the processes stopped (the last started first), `dataDir` removed.
 */
export async function bounded({ limitMs, body, procs, dataDir, screenshot, browser, page }) {
  let deadline;
  try {
    await Promise.race([
      body(),
      new Promise((_, reject) => {
        deadline = setTimeout(() => reject(new Error(`overall timeout of ${limitMs} ms`)), limitMs);
      }),
    ]);
  } catch (err) {
    const shown = page();
    if (shown) await shown.screenshot({ path: screenshot, timeout: 5000 }).catch(() => undefined);
    for (const p of procs) console.error(`--- ${p.name} output (tail) ---\n${p.tail()}`);
    throw err;
  } finally {
    clearTimeout(deadline);
    const opened = browser();
    if (opened) await Promise.race([opened.close().catch(() => undefined), sleep(5000)]);
    for (const p of [...procs].reverse()) await p.kill();
    await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
  }
}
