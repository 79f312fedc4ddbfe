// Copy volume to image on the original level, as the Cinder driver did it: the product has no export
// request, so this host reads the data itself. A temporary snapshot of the volume (a snapshot given is used
// as it is), a linked clone of it, the clone attached here with sds_cli, the image written from its device,
// then the clone detached and deleted and the snapshot deleted. The source stays in use meanwhile.
// The temporaries' names derive from the export (source and --out), so a rerun after a crash finds what the
// crashed run left and removes it first.
import { createHash } from 'node:crypto';
import type { ConnectorError, KvConnector } from '../connector/index.js';
import { deviceSizeBytes } from '../mount/device.js';
import type { CallOptions } from '../sds/backend.js';
import type { SdsClient } from '../sds/client.js';
import { isSdsError } from '../sds/errors.js';
import { convertToQcow2, copySparseRange, type CopyOptions } from './host-copy.js';

export interface ExportSource {
  volume?: string;
  snapshot?: string;
}

export interface ExportTemporaries {
  /** the temporary snapshot of a volume export (absent for a snapshot export) */
  snapshot?: string;
  /** the linked clone attached on this host */
  clone: string;
}

/**
 * The temporaries of one export. Upper case never occurs in names taken from CSI (src/controller/ids.ts), so
 * these cannot be a user's volume or snapshot.
 */
export function exportTemporaries(source: ExportSource, out: string): ExportTemporaries {
  const what = source.volume !== undefined ? `volume:${source.volume}` : `snapshot:${source.snapshot}`;
  const key = createHash('sha256').update(`${what}\0${out}`, 'utf8').digest('hex').slice(0, 32);
  return {
    ...(source.volume !== undefined ? { snapshot: `E_${key}.EXPORT_SNAP` } : {}),
    clone: `E_${key}.EXPORT_VOL`,
  };
}

export interface HostExportDeps {
  client: SdsClient;
  connector: KvConnector;
  progress: (line: string) => void;
  qemuImg?: string;
}

export interface HostExportRequest extends ExportSource {
  /** the source's size (the original level does not tell it): the clone's size and the image's */
  sizeBytes: number;
  format: 'raw' | 'qcow2';
  /** the final --out (names the temporaries) */
  out: string;
  /** the new file to write */
  part: string;
  /** stops the copy; the temporaries are still removed (the first Ctrl-C) */
  stopCopy: AbortSignal;
  /** stops everything at once, temporaries left for a rerun (the second Ctrl-C) */
  stopAll: AbortSignal;
}

/** Removes what an earlier run of this export left (clone detached here, then deleted; snapshot deleted). */
export async function removeTemporaries(
  deps: Pick<HostExportDeps, 'client' | 'connector'>,
  names: ExportTemporaries,
  opts: CallOptions = {},
): Promise<string[]> {
  const removed: string[] = [];
  if (await deps.client.getVolume(names.clone, opts)) {
    const device = await deps.connector.queryDevice(names.clone, opts);
    if (device !== undefined) {
      await deps.connector.detach(names.clone, opts);
      removed.push(`clone ${names.clone} detached from ${device}`);
    }
    await deps.client.deleteVolume(names.clone, opts);
    removed.push(`clone ${names.clone}`);
  }
  if (names.snapshot !== undefined && (await deps.client.getSnapshot(names.snapshot, opts))) {
    await deps.client.deleteSnapshot(names.snapshot, opts);
    removed.push(`snapshot ${names.snapshot}`);
  }
  return removed;
}

/** Writes the image of `req`'s source to `req.part` through a clone attached here; the temporaries go after. */
export async function exportThroughHost(deps: HostExportDeps, req: HostExportRequest): Promise<void> {
  const names = exportTemporaries(req, req.out);
  const opts: CallOptions = { signal: req.stopAll };
  const earlier = await removeTemporaries(deps, names, opts);
  if (earlier.length > 0) deps.progress(`export: removed what an earlier run left: ${earlier.join(', ')}`);

  try {
    let snapshotName = req.snapshot!;
    if (names.snapshot !== undefined) {
      snapshotName = names.snapshot;
      await deps.client.createSnapshot(snapshotName, req.volume!, opts);
    }
    try {
      await deps.client.createVolumeFromSnapshot(
        { name: names.clone, sizeBytes: req.sizeBytes, snapshotName, cloneType: 'linked' },
        opts,
      );
    } catch (err) {
      if (isSdsError(err, 'Internal'))
        err.message += ` (is --size ${req.sizeBytes} smaller than the source? it must be the source's size)`;
      throw err;
    }
    req.stopCopy.throwIfAborted();
    const device = await deps.connector.attach(names.clone, opts);
    const sizeBytes = await deviceSizeBytes(device, opts);
    deps.progress(
      `export: original level: ${names.snapshot ? `snapshot ${names.snapshot} of volume ${req.volume}` : `snapshot ${req.snapshot}`}, ` +
        `clone ${names.clone} attached at ${device} (${sizeBytes} bytes)`,
    );
    let lastShown = -1;
    const copy: CopyOptions = {
      signal: AbortSignal.any([req.stopCopy, req.stopAll]),
      onProgress: (done, total) => {
        const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
        if (pct !== lastShown)
          deps.progress(`export: ${pct}% (${Math.floor(done / MiB)}/${Math.ceil(total / MiB)} MiB)`);
        lastShown = pct;
      },
    };
    if (req.format === 'raw') await copySparseRange(device, req.part, sizeBytes, copy);
    else
      await convertToQcow2(device, req.part, {
        ...copy,
        sizeBytes,
        ...(deps.qemuImg ? { qemuImg: deps.qemuImg } : {}),
      });
  } finally {
    // Also after a failed or stopped copy. After the second Ctrl-C these calls stop at once (opts' signal is
    // aborted) and a rerun removes what is left.
    {
      const after = await removeTemporaries(deps, names, opts).catch((err: unknown) => {
        deps.progress(
          `export: the temporaries ${[names.clone, names.snapshot].filter(Boolean).join(', ')} were not all removed ` +
            `(${(err as ConnectorError | Error).message}); run the same command again to remove them`,
        );
        return [];
      });
      if (after.length > 0) deps.progress(`export: removed ${after.join(', ')}`);
    }
  }
}

const MiB = 1024 * 1024;
