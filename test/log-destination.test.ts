import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LogDestination } from '../src/log-destination.js';
import { exitCode, spawnProject } from './support/process.js';

/** Runs test/support/log-writer.ts; `pauseMs`: how long its stdout is not read at first. */
async function logWriter(lines: number, maxPendingBytes: number, exitAfterMs: number, pauseMs = 0) {
  const run = spawnProject('test/support/log-writer.ts', [String(lines), String(maxPendingBytes), String(exitAfterMs)], {});
  if (pauseMs > 0) {
    run.child.stdout?.pause();
    setTimeout(() => run.child.stdout?.resume(), pauseMs);
  }
  const code = await exitCode(run.child);
  if (!run.child.stdout?.readableEnded) await once(run.child.stdout!, 'end');
  const parsed = run
    .stdout()
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as { n?: number; level?: number; msg?: string });
  return {
    code,
    stderr: run.stderr(),
    numbers: parsed.flatMap((line) => (line.n === undefined ? [] : [line.n])),
    notes: parsed.filter((line) => line.n === undefined),
  };
}

const inOrder = (count: number) => Array.from({ length: count }, (_, n) => n);

t.test('lines still waiting when the process exits are all written, in order, even past a full pipe', async (t) => {
  // ~2.6 MB in one turn, then process.exit at once: nothing was written before the exit.
  const run = await logWriter(20_000, 64 * 1024 * 1024, 0);
  t.equal(run.code, 0, run.stderr);
  t.same(run.numbers, inOrder(20_000));
  t.same(run.notes, []);
});

t.test('a reader that stops for a while: the lines wait (EAGAIN is retried) and arrive in order', async (t) => {
  // ~700 KB, far more than a pipe holds, while nobody reads for half a second; the process exits a
  // second later, by when the writer has sent everything on its own.
  const run = await logWriter(6_000, 64 * 1024 * 1024, 1500, 500);
  t.equal(run.code, 0, run.stderr);
  t.same(run.numbers, inOrder(6_000));
  t.same(run.notes, []);
});

t.test('past its limit the destination drops new lines, counts them and says so in the log', async (t) => {
  // Lines are 118 to 121 bytes: 50,000 bytes hold about 420 of them; the rest are dropped.
  const run = await logWriter(5_000, 50_000, 300);
  t.equal(run.code, 0, run.stderr);
  const kept = run.numbers.length;
  t.ok(kept > 400 && kept < 430, `about 420 lines kept (${kept})`);
  t.same(run.numbers, inOrder(kept), 'the first lines, in order');
  t.equal(run.notes.length, 1);
  t.match(run.notes[0], { level: 40, msg: `${5_000 - kept} log lines were dropped: the log output was not being read` });
});

t.test('flush resolves once every line taken is written (a graceful stop awaits it)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-log-'));
  const fd = openSync(join(dir, 'out.log'), 'w');
  t.teardown(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  const log = new LogDestination(fd);
  await log.flush();
  for (let turn = 0; turn < 5; turn++) {
    // The last turn's lines are still only taken (not yet handed to a write) when flush is called.
    if (turn > 0) await new Promise((resolve) => setImmediate(resolve));
    for (let n = 0; n < 2_000; n++) log.write(`${JSON.stringify({ n: turn * 2_000 + n })}\n`);
  }
  await log.flush();
  const numbers = readFileSync(join(dir, 'out.log'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { n: number }).n);
  t.same(numbers, inOrder(10_000), 'all 10,000 lines, in order, when flush resolves');
});
