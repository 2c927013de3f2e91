import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import { CatalogFile, type Package } from '../schemas/catalog.js';
import { ConfigError } from './config.js';

/** The seed's three packs, sold when no CATALOG_FILE is configured. */
export const SEED_CATALOG: CatalogFile = {
  packages: [
    { package_id: 'package_1', name: 'Starter Pack', price_cents: 1000, currency_amount: 100 },
    { package_id: 'package_2', name: 'Popular Pack', price_cents: 2500, currency_amount: 300 },
    { package_id: 'package_3', name: 'Premium Pack', price_cents: 5000, currency_amount: 700 },
  ],
};

/** The packs for sale, fixed at start. Prices live here and only here. */
export class Catalog {
  readonly packages: readonly Package[];
  private readonly byId: ReadonlyMap<string, Package>;

  constructor(file: CatalogFile) {
    this.packages = file.packages.map((p) => ({
      package_id: p.package_id,
      name: p.name,
      price_cents: p.price_cents,
      price_dollars: p.price_cents / 100,
      currency_amount: p.currency_amount,
      currency: p.currency ?? 'usd',
    }));
    const byId = new Map<string, Package>();
    for (const p of this.packages) {
      if (byId.has(p.package_id)) throw new Error(`duplicate package_id ${JSON.stringify(p.package_id)}`);
      byId.set(p.package_id, p);
    }
    this.byId = byId;
  }

  get(packageId: string): Package | undefined {
    return this.byId.get(packageId);
  }
}

/** Loads the catalog from CATALOG_FILE, or the seed's packs; a bad file stops the start with one line. */
export function loadCatalog(file: string | undefined): Catalog {
  if (file === undefined) return new Catalog(SEED_CATALOG);
  const fail = (why: string) => new ConfigError('CATALOG_FILE', `Invalid configuration: CATALOG_FILE ${file}: ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw fail(err instanceof SyntaxError ? `not valid JSON (${err.message})` : 'cannot be read');
  }
  const error = Value.Errors(CatalogFile, parsed).First();
  if (error) throw fail(`${error.path || '/'} ${error.message.toLowerCase()}`);
  try {
    return new Catalog(parsed as CatalogFile);
  } catch (err) {
    throw fail((err as Error).message);
  }
}
