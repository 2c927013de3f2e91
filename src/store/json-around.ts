/**
 * A JSON text with numbers left out for a statement to fill in as it writes (a balance PostgreSQL
 * computes in the same statement): the caller renders its value as usual with `hole(0)`, `hole(1)`, …
 * in place of the numbers, and jsonAround cuts the text there, so `parts[0] + n0 + parts[1] + …` is
 * the JSON of the value with those numbers. The caller keeps owning the shape.
 *
 * A hole is a sentinel number. Undefined when its digits appear anywhere else in the text too (a
 * caller's string can hold anything) or a hole is not rendered exactly once, in order: then the
 * caller takes the path that knows the numbers first.
 */
export const hole = (index: number): number => Number.MIN_SAFE_INTEGER + index;

export function jsonAround(value: unknown, holes: number): string[] | undefined {
  const text = JSON.stringify(value);
  const parts: string[] = [];
  let rest = text;
  for (let index = 0; index < holes; index++) {
    const digits = String(hole(index));
    const pieces = rest.split(digits);
    if (pieces.length !== 2 || text.split(digits).length !== 2) return undefined;
    parts.push(pieces[0] ?? '');
    rest = pieces[1] ?? '';
  }
  parts.push(rest);
  return parts;
}
