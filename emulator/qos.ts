// QoS of attached volumes through the cgroup v1 blkio throttle: one "MAJ:MIN value" line per device in
// blkio.throttle.{read,write}_{iops,bps}_device; a value of 0 removes the limit. The rules live in the
// cgroup the emulator names (the root blkio cgroup by default), so they throttle every process of that
// hierarchy writing to the volume's loop device.
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './log.js';

const FILES = ['read_iops', 'write_iops', 'read_bps', 'write_bps'] as const;

export interface QosLimits {
  maxIops: number;
  /** 10^6 bytes/s */
  maxMbps: number;
}

export class BlkioThrottle {
  readonly enabled: boolean;
  readonly reason: string;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {
    if (!dir) {
      this.enabled = false;
      this.reason = 'disabled by --blkio-cgroup=""';
      return;
    }
    const missing = FILES.map((f) => this.file(f)).filter((p) => !existsSync(p));
    if (missing.length > 0) {
      this.enabled = false;
      this.reason = `no blkio throttle files in ${dir}`;
      return;
    }
    try {
      // Opening for writing is refused on a read-only cgroup mount (EROFS) or without permission (EACCES).
      for (const f of FILES) closeSync(openSync(this.file(f), 'r+'));
      this.enabled = true;
      this.reason = `blkio throttle in ${dir}`;
    } catch (err) {
      this.enabled = false;
      this.reason = `blkio throttle files in ${dir} are not writable: ${(err as Error).message}`;
    }
  }

  private file(kind: (typeof FILES)[number]): string {
    return join(this.dir, `blkio.throttle.${kind}_device`);
  }

  /** Sets (or with zeros, clears) the four limits of one device. Writes all four so stale rules go away. */
  apply(major: number, minor: number, limits: QosLimits): void {
    if (!this.enabled) return;
    const iops = Math.max(0, Math.floor(limits.maxIops));
    const bps = Math.max(0, Math.floor(limits.maxMbps)) * 1_000_000;
    const values: Record<(typeof FILES)[number], number> = {
      read_iops: iops,
      write_iops: iops,
      read_bps: bps,
      write_bps: bps,
    };
    for (const f of FILES) {
      try {
        writeFileSync(this.file(f), `${major}:${minor} ${values[f]}\n`);
      } catch (err) {
        this.log.warn({ err, device: `${major}:${minor}`, file: f }, 'cannot write blkio throttle rule');
      }
    }
  }

  clear(major: number, minor: number): void {
    this.apply(major, minor, { maxIops: 0, maxMbps: 0 });
  }
}
