import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import type { Test } from 'tap';
import { projectFile } from './project.js';

/** Debian's Chromium (package `chromium`); .ci/run installs it. Playwright never downloads a browser here. */
export const CHROMIUM = '/usr/bin/chromium';

/** Where screenshots go: a test artefact, never committed. */
export const ARTIFACTS = projectFile('test-artifacts/').pathname;

/** Why the browser tests cannot run, in one line, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium (.ci/run does)`;
}

/**
 * Headless Chromium with a fresh profile, closed (and the profile removed) when the test ends. The
 * background-networking flags keep it from calling out: this machine's network is closed.
 */
export async function launchChromium(t: Test): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'coinshop-chromium-'));
  mkdirSync(ARTIFACTS, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    locale: 'en-US',
    timezoneId: 'UTC',
    viewport: { width: 1024, height: 900 },
  });
  t.teardown(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return context;
}
