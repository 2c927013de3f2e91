/**
 * A server's memory pattern in miniature: batches of objects that live a while (longer than the
 * young generation keeps them) and then die. Prints the peak heap size in MB.
 */
const inFlight: { id: number; text: string }[][] = [];
let peak = 0;
for (let round = 0; round < 400; round++) {
  inFlight.push(Array.from({ length: 20_000 }, (_, id) => ({ id, text: `item ${id}` })));
  if (inFlight.length > 25) inFlight.shift();
  if (round % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
  peak = Math.max(peak, process.memoryUsage().heapTotal);
}
console.log(Math.round(peak / 1048576));
