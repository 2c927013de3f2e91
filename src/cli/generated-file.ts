import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A generator's command line: writes `content` to `file`, or with `check` (`--check`) only says
 * whether the committed file still matches — when it has drifted from `source`, it names the
 * `command` that regenerates it and sets a failing exit code. Returns whether the file matches.
 */
export function writeOrCheck(
  file: URL,
  content: string,
  { source, command, check = process.argv.includes('--check') }: { source: string; command: string; check?: boolean },
): boolean {
  const name = basename(fileURLToPath(file));
  if (!check) {
    writeFileSync(file, content);
    console.log(`wrote ${name}`);
    return true;
  }
  if (readFileSync(file, 'utf8') === content) return true;
  console.error(`${name} differs from ${source}: run \`${command}\` and commit it.`);
  process.exitCode = 1;
  return false;
}
