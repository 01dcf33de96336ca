/**
 * The stream sequences this run has folded into the graph, as ranges (they are nearly contiguous). A discovery batch
 * whose ack was lost (a NATS restart between the commit and the ack) comes back after ack_wait, behind newer scans;
 * folded again it would put its hosts back to an older scan until they scan again, so it is skipped.
 */
export class FoldedSeqs {
  /** disjoint, sorted [lo, hi] ranges; the oldest are dropped past `maxRanges` */
  private ranges: [number, number][] = [];
  constructor(private readonly maxRanges = 10_000) {}

  has(seq: number): boolean {
    const r = this.ranges;
    let lo = 0;
    let hi = r.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [a, b] = r[mid]!;
      if (seq < a) hi = mid - 1;
      else if (seq > b) lo = mid + 1;
      else return true;
    }
    return false;
  }

  add(seq: number): void {
    const r = this.ranges;
    const last = r.at(-1);
    // the common case: the next sequence, or one past the end
    if (last && seq === last[1] + 1) last[1] = seq;
    else if (!last || seq > last[1]) r.push([seq, seq]);
    else if (!this.has(seq)) {
      let i = r.findIndex(([a]) => a > seq);
      if (i < 0) i = r.length;
      r.splice(i, 0, [seq, seq]);
      // merge with neighbours it touches
      if (i + 1 < r.length && r[i + 1]![0] === seq + 1) r.splice(i, 2, [seq, r[i + 1]![1]]);
      if (i > 0 && r[i - 1]![1] === seq - 1) r.splice(i - 1, 2, [r[i - 1]![0], r[i]![1]]);
    }
    if (r.length > this.maxRanges) r.splice(0, r.length - this.maxRanges);
  }
}
