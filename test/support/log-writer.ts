/**
 * A process that logs through LogDestination to its stdout (test/log-destination.test.ts):
 * `log-writer.ts <lines> <maxPendingBytes> <exitAfterMs>` writes that many numbered lines in one
 * event-loop turn, then exits (at once for 0, else after that long).
 */
import { LogDestination } from '../../src/log-destination.js';

const [lines = 0, maxPendingBytes = 0, exitAfterMs = 0] = process.argv.slice(2).map(Number);
// As the server does (it asks whether stdout is a terminal): Node then makes stdout's pipe
// non-blocking, so a pipe its reader does not empty answers EAGAIN.
if (process.stdout.isTTY) throw new Error('stdout must be a pipe');
const log = new LogDestination(1, maxPendingBytes);
const pad = 'x'.repeat(100);
for (let n = 0; n < lines; n++) log.write(`${JSON.stringify({ n, pad })}\n`);
if (exitAfterMs === 0) process.exit(0);
setTimeout(() => process.exit(0), exitAfterMs);
