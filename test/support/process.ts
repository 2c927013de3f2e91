import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { entryPoint, root } from './project.js';

export interface Spawned {
  child: ChildProcess;
  /** Everything the process wrote so far, stdout and stderr. */
  output: () => string;
  stdout: () => string;
  stderr: () => string;
}

/**
 * Runs a TypeScript entry point of the project (src/server.ts, src/cli/…, test/support/…) as its own
 * process, as the test itself runs (compiled or through tsx: see entryPoint), but without tap's own
 * preloads: the child is no test, and records no coverage (merged with the suite's, a child's report
 * has been seen to clobber it).
 */
export function spawnProject(file: string, args: string[], env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, [...entryPoint(file), ...args], {
    cwd: root,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A test file that is stopped (tap's timeout) must not leave its server running.
  const killChild = () => child.kill('SIGKILL');
  process.on('exit', killChild).on('SIGALRM', killChild);
  child.on('exit', () => process.off('exit', killChild).off('SIGALRM', killChild));
  let stdout = '';
  let stderr = '';
  let both = '';
  child.stdout?.on('data', (chunk: Buffer) => ((stdout += chunk.toString()), (both += chunk.toString())));
  child.stderr?.on('data', (chunk: Buffer) => ((stderr += chunk.toString()), (both += chunk.toString())));
  return { child, output: () => both, stdout: () => stdout, stderr: () => stderr };
}

/** The exit code of `child` once it exits (null when a signal ended it). */
export async function exitCode(child: ChildProcess): Promise<number | null> {
  const [code] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  return code;
}

/** Starts src/server.ts as a real process on a free port and waits until it listens. */
export async function startServer(env: Record<string, string>): Promise<Spawned & { url: string }> {
  // No load shedding: on a busy test machine a stalled second would shed the test's requests.
  const server = spawnProject('src/server.ts', [], { PORT: '0', LOG_LEVEL: 'info', MAX_EVENT_LOOP_DELAY_MS: '0', ...env });
  // Generous: loading the server takes a while on a busy machine.
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(server.output());
    if (match?.[1]) return { ...server, url: match[1] };
    if (server.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  server.child.kill('SIGKILL');
  throw new Error(`server did not start:\n${server.output()}`);
}
