import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { projectFile, rootUrl as root } from './support/project.js';

const documents = [
  'README.md',
  ...readdirSync(projectFile('docs/'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** The document's lines outside fenced code blocks, where a `#` or `](` is not Markdown. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split('\n').filter((line) => {
    if (line.startsWith('```')) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const line of prose(text)) {
    const heading = /^#{1,6}\s+(.*)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const slug = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    result.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return result;
}

t.test('every relative link in the README and docs/ points at a file (and heading) that exists', async (t) => {
  for (const document of documents) {
    const base = new URL(document, root);
    const text = readFileSync(base, 'utf8');
    const targets = prose(text).flatMap((line) => [...line.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1] ?? ''));
    for (const target of targets.filter((target) => !/^[a-z]+:/.test(target))) {
      const [path = '', anchor] = target.split('#');
      const file = path === '' ? base : new URL(path, base);
      if (!existsSync(file)) {
        t.fail(`${document}: ${target} does not exist`);
        continue;
      }
      if (anchor !== undefined) {
        t.ok(
          anchors(readFileSync(file, 'utf8')).has(anchor),
          `${document}: ${target} names a heading of ${fileURLToPath(file).slice(fileURLToPath(root).length)}`,
        );
      }
    }
  }
});

t.test('the README stays a front door: at most 200 lines, linking every document in docs/', async (t) => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  t.ok(readme.split('\n').length - 1 <= 200, 'README.md is at most 200 lines');
  for (const document of documents.filter((name) => name !== 'README.md')) t.match(readme, `](${document})`, `links ${document}`);
  t.match(readme, 'npm install && npm start ', 'the quick start that serves the app');
  t.match(readme, 'npm install && npm test ', 'the quick start that runs every test');
});
