/**
 * Open-loop pacing: item i is due `i / rate` seconds after `start`, whatever the system under test answers (a closed
 * loop would slow down with it and hide its latency). A 5 ms timer, not a busy loop, so the pacer takes little of the
 * cores it shares with what it measures.
 */
export function paceOpenLoop(o: {
  total: number;
  rate: number;
  /** performance.now() of item 0 (default: now) */
  start?: number;
  tickMs?: number;
  /** sends what is due (items below `due`); true once everything went out */
  onDue: (due: number) => boolean;
}): Promise<void> {
  const start = o.start ?? performance.now();
  const tickMs = o.tickMs ?? 5;
  return new Promise<void>((done) => {
    const tick = () => {
      const due = Math.min(o.total, Math.floor(((performance.now() - start) / 1000) * o.rate));
      if (o.onDue(due)) done();
      else setTimeout(tick, tickMs);
    };
    tick();
  });
}
