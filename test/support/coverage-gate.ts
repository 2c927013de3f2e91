import { readFileSync } from 'node:fs';

/**
 * The coverage the suite must keep, set a little below what it measures: a drop means code landed
 * without tests. tap's own gate is all-or-nothing (100%), which would only invite ignore comments.
 */
const minimum = { lines: 95, statements: 95, functions: 96, branches: 85 } as const;

/** Code only the PostgreSQL pass can run: left out of the figures when that pass was skipped. */
const POSTGRES_ONLY = ['src/store/postgres.ts'];

type Metric = keyof typeof minimum;
type Counts = Record<Metric, { total: number; covered: number }>;

/** Prints the coverage of the last tap report against the minimums; false when one is missed. */
export function checkCoverage(options: { postgresRan: boolean }): boolean {
  const summary = JSON.parse(readFileSync('.tap/report/coverage-summary.json', 'utf8')) as Record<string, Counts>;
  const metrics = Object.keys(minimum) as Metric[];
  const left = options.postgresRan ? [] : Object.keys(summary).filter((file) => POSTGRES_ONLY.some((p) => file.endsWith(p)));
  const failures: Metric[] = [];
  for (const metric of metrics) {
    const total = summary['total']![metric].total - left.reduce((sum, file) => sum + summary[file]![metric].total, 0);
    const covered = summary['total']![metric].covered - left.reduce((sum, file) => sum + summary[file]![metric].covered, 0);
    const pct = total === 0 ? 100 : Math.floor((covered / total) * 10_000) / 100;
    if (pct < minimum[metric]) failures.push(metric);
    console.log(`coverage ${metric}: ${pct}% (minimum ${minimum[metric]}%)${left.length > 0 ? ', PostgreSQL-only files left out' : ''}`);
  }
  if (failures.length > 0) console.error(`coverage below the minimum for ${failures.join(', ')}`);
  return failures.length === 0;
}
