/**
 * Seconds per call of fn: after 50 ms of warm-up (lets V8 tier up the wasm code), five windows of
 * `budget` × 200 ms each; the median window and the range.
 */
export function time(fn: () => void, budget: number): { median: number; min: number; max: number } {
  for (let t0 = performance.now(); performance.now() - t0 < 50; ) fn();
  const windows: number[] = [];
  for (let wdw = 0; wdw < 5; wdw++) {
    let calls = 0;
    const t0 = performance.now();
    let t = t0;
    do {
      fn();
      calls++;
      t = performance.now();
    } while (t - t0 < budget * 200);
    windows.push((t - t0) / 1000 / calls);
  }
  windows.sort((a, b) => a - b);
  return { median: windows[2], min: windows[0], max: windows[4] };
}
