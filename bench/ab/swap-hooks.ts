/** The resolve hook behind swap.ts: the swapped module's importers get the bench arm instead. */
const arms: Record<string, { module: string; arm: string }> = {
  'sqlite-driver': { module: '/src/store/sqlite.ts', arm: './group-commit-sqlite.ts' },
  'sqlite-kysely': { module: '/src/store/sqlite.ts', arm: './kysely-sqlite.ts' },
  log: { module: '/src/log-destination.ts', arm: './pino-destination.ts' },
};
let swap: { module: string; arm: string } | undefined;

export function initialize(name: string | undefined): void {
  swap = name === undefined ? undefined : arms[name];
  if (name !== undefined && swap === undefined) throw new Error(`AB_SWAP=${name}: not one of ${Object.keys(arms).join(', ')}`);
}

interface Context {
  parentURL?: string | undefined;
}
type Next = (specifier: string, context: Context) => Promise<{ url: string }>;

export async function resolve(specifier: string, context: Context, next: Next): Promise<{ url: string }> {
  const resolved = await next(specifier, context);
  // The arm itself imports the module's types (erased) and nothing else of it.
  if (swap && resolved.url.endsWith(swap.module) && !context.parentURL?.includes('/bench/ab/')) {
    return next(new URL(swap.arm, import.meta.url).href, context);
  }
  return resolved;
}
