// mount(8) and umount(8): mounting a filesystem, bind mounts (read-only when asked), and unmounting that
// copes with a mount point whose filesystem is dead. Mount options never appear in error messages: CO
// flags may carry secrets.
import { MountError } from './errors.js';
import { runTool, ToolFailure } from './exec.js';

export const MOUNT_TIMEOUT_MS = 2 * 60_000;

function classifyMountFailure(err: unknown, what: string): never {
  if (err instanceof ToolFailure) {
    const said = err.stderr.replace(/\s+/g, ' ').trim().slice(0, 400) || `exit status ${err.exitCode}`;
    if (/already mounted|busy/i.test(err.stderr)) throw new MountError('Busy', `${what}: ${said}`, { cause: err });
    if (/does not exist|no such file/i.test(err.stderr))
      throw new MountError('NotFound', `${what}: ${said}`, { cause: err });
    throw new MountError('Failed', `${what}: ${said}`, { cause: err });
  }
  throw err;
}

/** `mount -t <fsType> [-o <options>] <device> <target>`. */
export async function mountFilesystem(
  devicePath: string,
  target: string,
  fsType: string,
  options: readonly string[],
  run: { signal?: AbortSignal } = {},
): Promise<void> {
  const args = ['-t', fsType, ...(options.length ? ['-o', options.join(',')] : []), devicePath, target];
  try {
    const shownAs = `mount -t ${fsType}${options.length ? ` -o <${options.length} options>` : ''} ${devicePath} ${target}`;
    await runTool('mount', args, { timeoutMs: MOUNT_TIMEOUT_MS, signal: run.signal, shownAs, discardStdout: true });
  } catch (err) {
    classifyMountFailure(err, `mounting ${devicePath} (${fsType}) at ${target}`);
  }
}

/**
 * Bind-mounts `source` (a directory, or a device node onto a file) at `target`; read-only takes a second
 * step (a bind mount ignores `ro` until remounted). If that step fails the bind is undone, so a read-only
 * request never leaves a writable mount behind.
 */
export async function bindMount(
  source: string,
  target: string,
  readOnly: boolean,
  run: { signal?: AbortSignal } = {},
): Promise<void> {
  try {
    // --no-canonicalize: both paths are canonical already (the mount table's spelling, a /dev node); the
    // kernel resolves them the same way, and mount(8) need not look them up again first.
    await runTool('mount', ['--no-canonicalize', '--bind', source, target], {
      timeoutMs: MOUNT_TIMEOUT_MS,
      signal: run.signal,
      discardStdout: true,
    });
  } catch (err) {
    classifyMountFailure(err, `bind-mounting ${source} at ${target}`);
  }
  if (!readOnly) return;
  try {
    await remountBindReadOnly(target, run);
  } catch (err) {
    await unmount(target).catch(() => undefined);
    throw err;
  }
}

/** Makes the bind mount at `target` read-only (the second step of a read-only bind). */
export async function remountBindReadOnly(target: string, run: { signal?: AbortSignal } = {}): Promise<void> {
  try {
    await runTool('mount', ['-o', 'remount,bind,ro', target], { timeoutMs: MOUNT_TIMEOUT_MS, signal: run.signal });
  } catch (err) {
    classifyMountFailure(err, `making the bind mount at ${target} read-only`);
  }
}

/**
 * Unmounts the top mount at `target` (canonical path). "Not mounted" is success. `lazy` detaches it now
 * and lets the kernel finish when the last user leaves: only for mounts whose filesystem is dead.
 */
export async function unmount(target: string, options: { lazy?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  // --no-canonicalize: the path comes from the mount table already, and resolving it would stat a dead mount.
  const args = ['--no-canonicalize', ...(options.lazy ? ['--lazy'] : []), target];
  try {
    await runTool('umount', args, { timeoutMs: MOUNT_TIMEOUT_MS, signal: options.signal, discardStdout: true });
  } catch (err) {
    if (err instanceof ToolFailure) {
      if (/not mounted|no mount point specified/i.test(err.stderr)) return;
      const said = err.stderr.replace(/\s+/g, ' ').trim().slice(0, 400);
      if (/busy/i.test(err.stderr)) throw new MountError('Busy', `unmounting ${target}: ${said}`, { cause: err });
      throw new MountError('Failed', `unmounting ${target}: ${said || `exit status ${err.exitCode}`}`, { cause: err });
    }
    throw err;
  }
}
