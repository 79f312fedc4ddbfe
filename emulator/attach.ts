// The data plane behind sds_cli: attach a volume as a loop device on this host, detach it, report it.
// Attach and detach of one volume run one after the other; the attachments table records each step so a
// crash in between is finished by reconcile (emulator/README.md).
import { promises as fsp } from 'node:fs';
import { KvCode } from '../src/protocol/kv.js';
import { nowSeconds, poolUnseenBy, type Ctx } from './context.js';
import { fsyncPath, reflink, removeQuietly, sparseCopy } from './files.js';
import { KeyedQueue } from './locks.js';
import { attachLoop, backingFileOf, detachLoop, deviceNumbers, isDeviceBusy } from './loopdev.js';
import type { AttachmentRow, VolumeRow } from './store.js';

export interface KvReply {
  ret_code: number;
  ret_desc: string;
  dev_addr?: string;
  /** a detach that had nothing to do, and why: the original level answers these apart */
  nothingToDetach?: 'no-volume' | 'not-attached';
}

const reply = (code: number, desc: string, devAddr?: string): KvReply => ({
  ret_code: code,
  ret_desc: desc,
  dev_addr: devAddr,
});

export interface AttachOptions {
  /**
   * Attach only volumes mapped to this host (MAP_VOLUME_REQ). The original level has no mapping request:
   * there the host's own sds_cli is all it takes, read-write, as os-brick did it.
   */
  requireMapping: boolean;
}

export class AttachService {
  readonly queue = new KeyedQueue();

  constructor(
    private readonly ctx: Ctx,
    private readonly options: AttachOptions = { requireMapping: true },
  ) {}

  private volumeFile(row: VolumeRow): string | undefined {
    return this.ctx.pools.get(row.pool)?.volumePath(row.name);
  }

  /** The attachment of a volume when its device still shows the volume's file; a stale row is dropped. */
  private liveAttachment(row: VolumeRow, hostId: string): AttachmentRow | undefined {
    const att = this.ctx.store.attachment(row.id, hostId);
    if (!att || att.state !== 'attached') return att;
    if (backingFileOf(att.device) === this.volumeFile(row)) return att;
    this.ctx.log.warn(
      { volume: row.name, device: att.device },
      'attached device no longer backs the volume; dropping the record',
    );
    this.ctx.qos.clear(att.dev_major, att.dev_minor);
    this.ctx.store.deleteAttachment(row.id, hostId);
    return undefined;
  }

  /** Attach on `hostId` (the host whose data plane sds_cli reached; this VBS's own by default). */
  attach(name: string, hostId = this.ctx.hostId): Promise<KvReply> {
    return this.queue.run(name, async () => {
      const { ctx } = this;
      const row = ctx.store.volume(name);
      if (!row || row.state === 'deleting') return reply(KvCode.VOLUME_NOT_EXIST, `volume ${name} does not exist`);
      // Checked on both levels: the original one has no mapping, yet a host still reaches only the LUNs it sees.
      const unseen = poolUnseenBy(ctx, row.pool, hostId, name);
      if (unseen) return reply(KvCode.NOT_MOUNT_NODE, unseen);
      const mapping = ctx.store.mappings(row.id).find((m) => m.host_id === hostId);
      if (!mapping && this.options.requireMapping) {
        return reply(KvCode.NOT_MOUNT_NODE, `volume ${name} is not mapped to host ${hostId}`);
      }
      const existing = this.liveAttachment(row, hostId);
      if (existing?.state === 'attached') return reply(KvCode.ALREADY_ATTACHED, 'already attached', existing.device);
      if (existing)
        return reply(
          KvCode.BUSY,
          `volume ${name} is being ${existing.state === 'attaching' ? 'attached' : 'detached'}`,
        );
      if (row.state === 'creating' || row.state === 'extending')
        return reply(KvCode.BUSY, `volume ${name} is busy (${row.state})`);
      if (ctx.stopping) return reply(KvCode.BUSY, 'the VBS is shutting down; retry');
      const file = this.volumeFile(row);
      const pool = ctx.pools.get(row.pool);
      if (row.state === 'fault' || !file || !pool?.healthy) {
        return reply(
          KvCode.DEVICE_FAILED,
          `volume ${name} is faulty: ${row.fault_reason || pool?.faultReason || 'pool missing'}`,
        );
      }
      const base: AttachmentRow = {
        vol_id: row.id,
        host_id: hostId,
        state: 'attaching',
        device: '',
        dev_major: 0,
        dev_minor: 0,
        read_only: mapping?.access_mode === 'ro' ? 1 : 0,
        attached_at: nowSeconds(),
      };
      ctx.store.upsertAttachment(base);
      try {
        const device = await attachLoop(file, {
          readOnly: base.read_only === 1,
          directIo: row.cache_policy === 'none',
        });
        const { major, minor } = deviceNumbers(device);
        ctx.qos.apply(major, minor, { maxIops: row.max_iops, maxMbps: row.max_mbps });
        ctx.store.upsertAttachment({ ...base, state: 'attached', device, dev_major: major, dev_minor: minor });
        ctx.log.info({ volume: name, hostId, device, readOnly: base.read_only === 1 }, 'attached');
        return reply(KvCode.OK, 'success', device);
      } catch (err) {
        ctx.store.deleteAttachment(row.id, hostId);
        ctx.log.error({ err, volume: name, hostId }, 'attach failed');
        return reply(KvCode.DEVICE_FAILED, `cannot make a block device for ${name}: ${(err as Error).message}`);
      }
    });
  }

  /** Detach; `force` also releases a device in use (the kernel then frees it when its last user closes it). */
  detach(name: string, hostId = this.ctx.hostId, force = false): Promise<KvReply> {
    return this.queue.run(name, () => this.detachNow(name, hostId, force));
  }

  /** Detach without taking the queue: for callers already running inside `queue.run(name)`. */
  async detachNow(name: string, hostId: string, force: boolean): Promise<KvReply> {
    const { ctx } = this;
    const row = ctx.store.volume(name);
    if (!row)
      return { ...reply(KvCode.OK, `volume ${name} does not exist; nothing to detach`), nothingToDetach: 'no-volume' };
    const att = ctx.store.attachment(row.id, hostId);
    if (!att) return { ...reply(KvCode.OK, 'not attached'), nothingToDetach: 'not-attached' };
    const file = this.volumeFile(row);
    const ours = att.device !== '' && backingFileOf(att.device) === file;
    if (ours && !force && isDeviceBusy(att.device)) {
      return reply(KvCode.DEVICE_FAILED, `device ${att.device} of ${name} is in use (mounted?); unmount it first`);
    }
    // A forced detach (the host is down, or Kubernetes says it is out of service): whoever still holds the
    // device — a mount, or a process with it open, which no check can see — must not write to the volume
    // any more, should that host come back.
    // A new inode would also cut off the other hosts that share the volume (raw block during a live
    // migration): there only the device is released, and the fence is left to the caller (docs/features.md).
    const shared = ctx.store.attachments(row.id).some((a) => a.host_id !== hostId);
    const fence = ours && force && file !== undefined && !shared;
    if (ours && force && shared)
      ctx.log.warn({ volume: name, hostId }, 'forced detach of a volume other hosts also hold: not fenced');
    ctx.store.setAttachmentState(row.id, hostId, 'detaching');
    try {
      if (att.dev_major || att.dev_minor) ctx.qos.clear(att.dev_major, att.dev_minor);
      if (ours) await detachLoop(att.device);
      if (fence) await this.fence(row, file);
    } catch (err) {
      ctx.store.setAttachmentState(row.id, hostId, 'attached');
      ctx.log.error({ err, volume: name, device: att.device }, 'detach failed');
      return reply(KvCode.DEVICE_FAILED, `cannot detach ${att.device}: ${(err as Error).message}`);
    }
    ctx.store.deleteAttachment(row.id, hostId);
    ctx.log.info({ volume: name, hostId, device: att.device, force }, 'detached');
    return reply(KvCode.OK, 'success');
  }

  /**
   * Gives the volume a new inode holding its data as of now: a reflink copy (or a full sparse copy in a
   * directory pool) renamed over the file. The old device keeps the old, now unlinked, inode: what it writes
   * from here on reaches no volume, and the kernel frees it when its last user closes it.
   */
  private async fence(row: VolumeRow, file: string): Promise<void> {
    const pool = this.ctx.pools.get(row.pool);
    const copy = `${file}.fence`;
    await removeQuietly(copy);
    try {
      await (pool?.linkedClone ? reflink(file, copy) : sparseCopy(file, copy));
      fsyncPath(copy);
      await fsp.rename(copy, file);
    } catch (err) {
      await removeQuietly(copy);
      throw err;
    }
    this.ctx.log.warn(
      { volume: row.name },
      'fenced: the device still held by the old host no longer writes to the volume',
    );
  }

  querydev(name: string, hostId = this.ctx.hostId): Promise<KvReply> {
    return this.queue.run(name, async () => {
      const row = this.ctx.store.volume(name);
      if (!row || row.state === 'deleting') return reply(KvCode.VOLUME_NOT_EXIST, `volume ${name} does not exist`);
      const att = this.liveAttachment(row, hostId);
      if (att?.state === 'attached') return reply(KvCode.OK, 'success', att.device);
      return reply(KvCode.NOT_ATTACHED, `volume ${name} is not attached`);
    });
  }

  /** Attachment details for QUERY_VOLUME_HOSTS_REQ. */
  deviceOf(row: VolumeRow, hostId: string): string | undefined {
    const att = this.ctx.store.attachment(row.id, hostId);
    return att?.state === 'attached' ? att.device : undefined;
  }
}
