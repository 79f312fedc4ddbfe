// Latency summaries and the plain-text table of `npm run bench`.
import { loadavg } from 'node:os';

export interface Summary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles of latencies in ms. */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, mean: NaN, p50: NaN, p95: NaN, p99: NaN, min: NaN, max: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    count: sorted.length,
    mean,
    p50: at(0.5),
    p95: at(0.95),
    p99: at(0.99),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
  };
}

/** The 1-minute load average, as every figure carries it. */
export function load1(): number {
  return Math.round(loadavg()[0]! * 100) / 100;
}

/** One figure of the run: what was measured, its value, and the floor it is read against. */
export interface Figure {
  section: string;
  name: string;
  /** the headline value */
  value: number;
  unit: string;
  latency?: Summary;
  /** ops/s for throughput figures */
  opsPerSec?: number;
  /** the floor this figure is read against, and value ÷ floor (for throughput: floor ÷ value, so > 1 = slower) */
  floor?: { name: string; value: number; unit: string };
  ratio?: number;
  note?: string;
  load: number;
}

export function fmt(n: number | undefined, digits = 1): string {
  if (n === undefined || Number.isNaN(n)) return '-';
  if (Math.abs(n) >= 1000) return n.toFixed(0);
  if (Math.abs(n) >= 100) return n.toFixed(Math.min(digits, 1));
  if (Math.abs(n) >= 10) return n.toFixed(Math.min(digits + 1, 2));
  return n.toFixed(Math.min(digits + 2, 3));
}

/** A fixed-width table: first column left-aligned, the rest right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function figureRows(figures: readonly Figure[]): string[][] {
  return figures.map((f) => [
    `${f.section}/${f.name}`,
    `${fmt(f.value)} ${f.unit}`,
    f.latency ? fmt(f.latency.p50) : '-',
    f.latency ? fmt(f.latency.p95) : '-',
    f.latency ? fmt(f.latency.p99) : '-',
    f.floor ? `${fmt(f.floor.value)} ${f.floor.unit} (${f.floor.name})` : '-',
    f.ratio !== undefined ? `${fmt(f.ratio)}×` : '-',
    fmt(f.load, 1),
  ]);
}

export const FIGURE_HEADER = ['figure', 'value', 'p50 ms', 'p95 ms', 'p99 ms', 'floor', 'ratio', 'load'];

/** A latency figure in ms: the p50 as its value, with the whole summary and any `more` (floor, note). */
export function latencyFigure(
  section: string,
  name: string,
  latency: Summary,
  more: Partial<Omit<Figure, 'load'>> = {},
): Omit<Figure, 'load'> {
  return { section, name, value: latency.p50, unit: 'ms', latency, ...more };
}
