#!/usr/bin/env node
// Runs the unit tests once (vitest through `ng test`) and ends with a plain
// summary line, `N passed, N failed` (`, N skipped` when some were), that CI
// can read. Exits non-zero when anything failed or the test build broke.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ma-vitest-'));
const report = path.join(tmp, 'report.json');
const ng = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'ng.cmd' : 'ng');

const args = [
  'test',
  '--watch=false',
  '--progress=false',
  // The first reporter gets --output-file.
  '--reporters=json',
  '--reporters=default',
  `--output-file=${report}`,
  ...process.argv.slice(2),
];

const child = spawn(ng, args, { cwd: root, stdio: 'inherit', env: { ...process.env, NG_CLI_ANALYTICS: 'false' } });
const code = await new Promise((resolve) => {
  child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
  child.on('error', (err) => {
    console.error(`cannot run ng: ${err.message} (run "npm ci" first)`);
    resolve(1);
  });
});

let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests ?? 0;
  failed = r.numFailedTests ?? 0;
  skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  // A test file that failed to load counts as a failure too.
  if (failed === 0 && (r.success === false || (r.numFailedTestSuites ?? 0) > 0)) {
    failed = Math.max(1, r.numFailedTestSuites ?? 0);
  }
} else {
  console.error('no test report was written (the test build failed?)');
}
if (code !== 0 && failed === 0) failed = 1;
if (passed === 0 && failed === 0) {
  console.error('no tests ran');
  failed = 1;
}
rmSync(tmp, { recursive: true, force: true });

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
