import t from 'tap';
import { exitCode, spawnProject } from './support/process.js';

async function peakHeapMB(percent: number): Promise<number> {
  const run = spawnProject('test/support/heap-churn.ts', [String(percent)], {});
  const code = await exitCode(run.child);
  if (code !== 0) throw new Error(run.output());
  return Number(run.stdout().trim());
}

t.test('HEAP_GROWTH_PERCENT set in a running process holds the heap down (V8 reads it at every full GC)', async (t) => {
  const [own, limited] = [await peakHeapMB(0), await peakHeapMB(50)];
  t.ok(limited < own * 0.7, `grown at most 50 % past live data: ${limited} MB, against ${own} MB with V8's own factor`);
});
