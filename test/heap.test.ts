import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import packageJson from '../package.json' with { type: 'json' };
import { entryPoint, root } from './support/project.js';

/** The V8 flags `npm start` (and the image, test/server.test.ts) gives node. */
const startFlags = packageJson.scripts.start.split(' ').filter((word) => word.startsWith('--'));

async function peakHeapMB(flags: string[]): Promise<number> {
  const { stdout } = await promisify(execFile)(process.execPath, [...flags, ...entryPoint('test/support/heap-churn.ts')], { cwd: root });
  return Number(stdout.trim());
}

t.test("npm start's node flags hold the heap down: a full collection once it has grown 50 % past live data", async (t) => {
  t.ok(startFlags.includes('--heap-growing-percent=50'), startFlags.join(' '));
  const [own, started] = [await peakHeapMB([]), await peakHeapMB(startFlags)];
  t.ok(started < own * 0.7, `peak heap ${started} MB with ${startFlags.join(' ')}, against ${own} MB with V8's own settings`);
});
