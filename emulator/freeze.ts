// File-system freezes for crash-consistent group snapshots: find where a volume's block device is mounted on
// this host, freeze that file system (fsfreeze -f), and thaw it again. Every mount point this daemon froze
// is remembered until it is thawed, so shutdown and exit thaw whatever is left: a frozen file system blocks
// every writer on it, and nothing but a thaw releases it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { run, ToolError } from './exec.js';
import type { Logger } from './log.js';

const unescapeMount = (s: string): string =>
  s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * Mount points of the file system on block device `major:minor`, from /proc/self/mountinfo (field 3 is the
 * st_dev of the mounted file system). Bind mounts of it (a CSI publish) are listed too; they share one
 * super block, so freezing any one of them freezes all.
 */
export function mountPointsOf(
  major: number,
  minor: number,
  mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'),
): string[] {
  const want = `${major}:${minor}`;
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const parts = line.split(' ');
    if (parts.length < 5 || parts[2] !== want) continue;
    out.push(unescapeMount(parts[4]!));
  }
  return out;
}

export class FreezeError extends Error {
  override name = 'FreezeError';
  constructor(
    message: string,
    /** true when someone else holds the file system frozen */
    readonly frozenElsewhere = false,
  ) {
    super(message);
  }
}

export class Freezer {
  /** mount points this daemon froze (or may have frozen: a freeze that failed half-way) and not yet thawed */
  private readonly frozen = new Set<string>();

  constructor(private readonly log: Logger) {}

  get frozenNow(): readonly string[] {
    return [...this.frozen];
  }

  /**
   * Freezes the file system mounted at `mountPoint`, bounded by `timeoutMs`. A file system someone else froze
   * answers EBUSY and is left as it is. After any other failure (a timeout included: the kernel may finish the
   * freeze after the tool was killed) the file system is thawed before the error is thrown.
   */
  async freeze(mountPoint: string, timeoutMs: number): Promise<void> {
    this.frozen.add(mountPoint);
    try {
      await run('fsfreeze', ['-f', '--', mountPoint], { timeoutMs: Math.max(1, timeoutMs) });
      // Frozen now, whatever a thaw attempted meanwhile (it found nothing to thaw) removed.
      this.frozen.add(mountPoint);
    } catch (err) {
      if (err instanceof ToolError && /resource busy/i.test(err.stderr)) {
        this.frozen.delete(mountPoint);
        throw new FreezeError(`the file system at ${mountPoint} is already frozen by someone else`, true);
      }
      await this.thaw(mountPoint).catch(() => undefined);
      throw new FreezeError(`cannot freeze the file system at ${mountPoint}: ${(err as Error).message}`);
    }
  }

  /** Thaws a file system this daemon froze; one that is not frozen (EINVAL) counts as thawed. */
  async thaw(mountPoint: string): Promise<void> {
    try {
      await run('fsfreeze', ['-u', '--', mountPoint], { timeoutMs: 30_000 });
    } catch (err) {
      if (!(err instanceof ToolError && /invalid argument/i.test(err.stderr))) {
        this.log.error(
          { err, mountPoint },
          'cannot thaw a file system frozen for a group snapshot; run fsfreeze -u on it',
        );
        throw err;
      }
    }
    this.frozen.delete(mountPoint);
  }

  /** Thaws everything still frozen; never throws (each failure is logged). */
  async thawAll(): Promise<void> {
    await Promise.all([...this.frozen].map((mp) => this.thaw(mp).catch(() => undefined)));
  }

  /** For exit paths that cannot wait for a promise (a second signal, a fatal error). */
  thawAllSync(): void {
    for (const mp of this.frozen) {
      spawnSync('fsfreeze', ['-u', '--', mp], { timeout: 10_000, stdio: 'ignore' });
      this.frozen.delete(mp);
    }
  }
}

/** Thaws mount points recorded by a daemon that died while they were frozen (reconcile). */
export async function thawRecorded(mountPoints: readonly string[], log: Logger): Promise<number> {
  let thawed = 0;
  for (const mp of mountPoints) {
    try {
      await run('fsfreeze', ['-u', '--', mp], { timeoutMs: 30_000 });
      thawed++;
      log.warn({ mountPoint: mp }, 'thawed a file system left frozen by an interrupted group snapshot');
    } catch (err) {
      // Not frozen (EINVAL) is the usual case: the daemon died after its own thaw. Gone: nothing to thaw.
      if (!(err instanceof ToolError && /invalid argument|no such file/i.test(err.stderr))) {
        log.error({ err, mountPoint: mp }, 'cannot thaw a file system recorded as frozen; run fsfreeze -u on it');
      }
    }
  }
  return thawed;
}
