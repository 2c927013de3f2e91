/**
 * Where the project's files are, for tests that read them or start its entry points, whether the test
 * runs as TypeScript through tsx (a single file: `npx tap test/x.test.ts`) or compiled into .build/
 * (`npm test`, whose type check emits there: see test/support/run-suite.ts).
 */
import { fileURLToPath } from 'node:url';

const here = new URL('../..', import.meta.url);

/** True when this module runs compiled, from .build/. */
export const compiled = here.pathname.endsWith('/.build/');

/** The project's root folder, as a URL ending in '/'. */
export const rootUrl = compiled ? new URL('..', here) : here;

/** The project's root folder. */
export const root = fileURLToPath(rootUrl);

/** A file of the project (`openapi.yaml`, `docs/`), by its path from the root. */
export const projectFile = (path: string): URL => new URL(path, rootUrl);

/**
 * The project file a path the project's own code computed from its module names (src/cli's and
 * sdk/'s outputs): itself from source; compiled, the same path under the root rather than .build/.
 */
export const inSource = (url: URL): URL => (compiled ? new URL(url.href.replace(new URL('.build/', rootUrl).href, rootUrl.href)) : url);

/**
 * Node's arguments to run one of the project's TypeScript entry points (`src/server.ts`), relative
 * to the root: its compiled JS when the tests run compiled (fresh: the suite compiled it just before,
 * and starting it takes about half the time; stack traces name the TypeScript), otherwise the source
 * through tsx.
 */
export function entryPoint(file: string): string[] {
  return compiled ? ['--enable-source-maps', `.build/${file.replace(/\.ts$/, '.js')}`] : ['--import=tsx', file];
}
