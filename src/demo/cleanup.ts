// Undoing what the demo made: after a failed or interrupted step, and its working directory at the end.
import { readFile, rm } from 'node:fs/promises';
import type { CsiClients } from '../util/csi-client.js';
import { out } from './output.js';

/** What exists now, for the clean-up after a failed step (removed in reverse dependency order). */
export interface Live {
  /** target → volume */
  published: Map<string, string>;
  /** staging path → volume */
  staged: Map<string, string>;
  attached: Set<string>;
  snapshots: Set<string>;
  volumes: string[];
}

export function nothingLive(): Live {
  return { published: new Map(), staged: new Map(), attached: new Set(), snapshots: new Set(), volumes: [] };
}

/** Removes the demo's directory, unless something is still mounted in it (rm would reach into a volume). */
export async function removeWorkDir(work: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p): p is string => p !== undefined && (p === work || p.startsWith(`${work}/`)));
  if (mounts.length > 0) {
    out(`left ${work} in place: still mounted there: ${mounts.join(', ')}\n`);
    return;
  }
  await rm(work, { recursive: true, force: true });
}

/** The calls that undo what the demo made: its teardown steps and cleanUp make the same ones. */
export function undoCalls(csi: CsiClients, nodeId: () => string) {
  return {
    unpublish: (target: string, id: string) => csi.node.NodeUnpublishVolume({ volume_id: id, target_path: target }),
    unstage: (staging: string, id: string) =>
      csi.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }),
    unmap: (id: string) => csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId() }),
  };
}

/** Undoes each of `items` in turn, forgetting each once it is undone: what a failure leaves is cleanUp's. */
export async function undoEach<K, V>(
  items: { entries(): IterableIterator<[K, V]>; delete(key: K): boolean },
  undo: (key: K, value: V) => Promise<unknown>,
): Promise<void> {
  for (const [key, value] of [...items.entries()]) {
    await undo(key, value);
    items.delete(key);
  }
}

/** After a failed step: removes whatever the demo made, in reverse dependency order, reporting each attempt. */
export async function cleanUp(csi: CsiClients, live: Live, nodeId: string): Promise<void> {
  const undo = undoCalls(csi, () => nodeId);
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      out(`cleanup: ${what}\n`);
    } catch (err) {
      out(`cleanup: ${what} FAILED: ${(err as Error).message}\n`);
    }
  };
  for (const [target, id] of live.published) await attempt(`unpublish ${target}`, () => undo.unpublish(target, id));
  for (const [staging, id] of live.staged) await attempt(`unstage ${staging}`, () => undo.unstage(staging, id));
  for (const id of live.attached) await attempt(`unmap ${id}`, () => undo.unmap(id));
  for (const id of [...live.volumes].reverse().slice(0, -1))
    await attempt(`delete ${id}`, () => csi.controller.DeleteVolume({ volume_id: id }));
  for (const id of live.snapshots)
    await attempt(`delete ${id}`, () => csi.controller.DeleteSnapshot({ snapshot_id: id }));
  const first = live.volumes[0];
  if (first) await attempt(`delete ${first}`, () => csi.controller.DeleteVolume({ volume_id: first }));
}
