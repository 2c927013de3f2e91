import { setFlagsFromString } from 'node:v8';

/**
 * Lets the JavaScript heap grow at most `percent` past what the last full garbage collection found
 * live before the next one (V8's --heap-growing-percent; 0 leaves V8's own factor, up to 4×). V8
 * reads the flag at every full collection, so setting it in a running process applies from the next.
 */
export function limitHeapGrowth(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
