// Max-heap of candidate merges (SentencePiece's `agenda`): highest score first, ties broken by
// the leftmost symbol. Struct-of-arrays storage sized once per encode, so pushes allocate nothing.

export class PairHeap {
  /** [capacity] per entry: score of the merged piece (float32 value) */
  private readonly score: Float64Array;
  /** [capacity] per entry: left symbol index */
  readonly left: Int32Array;
  /** [capacity] per entry: right symbol index */
  readonly right: Int32Array;
  /** [capacity] per entry: merged length in UTF-16 units, to spot stale entries */
  readonly size: Int32Array;
  /** [capacity] heap order of entry indices */
  private readonly heap: Int32Array;
  private count = 0;
  private entries = 0;

  constructor(capacity: number) {
    this.score = new Float64Array(capacity);
    this.left = new Int32Array(capacity);
    this.right = new Int32Array(capacity);
    this.size = new Int32Array(capacity);
    this.heap = new Int32Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  /** true if entry a should pop before entry b */
  private before(a: number, b: number): boolean {
    const sa = this.score[a];
    const sb = this.score[b];
    return sa > sb || (sa === sb && this.left[a] < this.left[b]);
  }

  push(score: number, left: number, right: number, size: number): void {
    const e = this.entries++;
    this.score[e] = score;
    this.left[e] = left;
    this.right[e] = right;
    this.size[e] = size;
    const h = this.heap;
    let i = this.count++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(e, h[parent])) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = e;
  }

  /** Removes the best entry and returns its index (read left/right/size with it). */
  pop(): number {
    const h = this.heap;
    const top = h[0];
    const last = h[--this.count];
    let i = 0;
    const n = this.count;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.before(h[child + 1], h[child])) child++;
      if (!this.before(h[child], last)) break;
      h[i] = h[child];
      i = child;
    }
    if (n > 0) h[i] = last;
    return top;
  }
}
