// Host mappings: which hosts may attach a volume, and how (rw/ro, exclusive).
import { Key } from '../src/protocol/catalog.js';
import { encodeRecord, RetCode, type Field } from '../src/protocol/vbs.js';
import type { AttachService } from './attach.js';
import { poolUnseenBy, type Ctx } from './context.js';
import { busy, notExist, VbsError } from './errors.js';
import { volKey } from './locks.js';
import type { VolumeRow } from './store.js';

function mappableVolume(ctx: Ctx, name: string): VolumeRow {
  const row = ctx.store.volume(name);
  if (!row) throw notExist(`volume ${name}`);
  const holder = ctx.locks.holder(volKey(name));
  if (row.state === 'creating' || row.state === 'deleting' || holder) throw busy(`volume ${name}`, holder ?? row.state);
  return row;
}

function checkHost(ctx: Ctx, hostId: string): void {
  if (!ctx.store.hosts().some((h) => h.host_id === hostId)) {
    throw new VbsError(RetCode.HOST_NOT_EXIST, `${Key.HOST_ID}: host ${hostId} is not known to this VBS`);
  }
}

export function mapVolume(ctx: Ctx, name: string, hostId: string, mode: 'rw' | 'ro', exclusive: boolean): void {
  const row = mappableVolume(ctx, name);
  checkHost(ctx, hostId);
  // A host without a path to the pool's LUN could never attach the volume (docs/socket-api.md, MAP_VOLUME_REQ).
  const unseen = poolUnseenBy(ctx, row.pool, hostId, name);
  if (unseen) throw new VbsError(RetCode.NOT_SUPPORTED, `${Key.HOST_ID}: ${unseen}`);
  const mappings = ctx.store.mappings(row.id);
  const same = mappings.find((m) => m.host_id === hostId);
  if (same) {
    if (same.access_mode === mode) return;
    throw new VbsError(
      RetCode.MAP_CONFLICT,
      `${Key.ACCESS_MODE}: volume ${name} is mapped to ${hostId} as ${same.access_mode}`,
    );
  }
  const others = mappings.filter((m) => m.host_id !== hostId);
  if (exclusive && others.length > 0) {
    throw new VbsError(
      RetCode.MAPPED_ELSEWHERE,
      `${Key.EXCLUSIVE}: volume ${name} is mapped to ${others.map((m) => m.host_id).join(', ')}`,
    );
  }
  ctx.store.upsertMapping(row.id, hostId, mode);
}

// Host liveness. A real VBS cluster learns it from its members' heartbeats. Here a host is down when it is
// marked so by hand (SET_HOST_STATE_REQ: tests and operators' drills) or when the front end of a data host
// (emulator/host.ts) that had come up is gone (emulator/hosts.ts). Kept in memory only, per store (every
// host's view of the context shares it): every host is online after a restart.
const offlineHosts = new WeakMap<object, Set<string>>();

export function isHostOnline(ctx: Ctx, hostId: string): boolean {
  return !offlineHosts.get(ctx.store)?.has(hostId);
}

export function setHostState(ctx: Ctx, hostId: string, online: boolean): void {
  checkHost(ctx, hostId);
  const set = offlineHosts.get(ctx.store) ?? new Set<string>();
  offlineHosts.set(ctx.store, set);
  if (online) set.delete(hostId);
  else set.add(hostId);
  ctx.log.warn({ hostId, online }, online ? 'host marked online' : 'host marked offline');
}

export async function unmapVolume(
  ctx: Ctx,
  attach: AttachService,
  name: string,
  hostId: string,
  force: boolean,
): Promise<void> {
  // Serialized with attach/detach of the same volume.
  await attach.queue.run(name, async () => {
    const row = ctx.store.volume(name);
    if (!row) throw notExist(`volume ${name}`);
    if (!ctx.store.mappings(row.id).some((m) => m.host_id === hostId)) return;
    const att = ctx.store.attachment(row.id, hostId);
    if (att) {
      if (!force) {
        throw new VbsError(
          RetCode.ATTACHED,
          `volume ${name} is attached on ${hostId}${att.device ? ` as ${att.device}` : ''}; detach it or unmap with force=1`,
        );
      }
      const result = await attach.detachNow(name, hostId, true);
      if (result.ret_code !== 0) throw new VbsError(RetCode.INTERNAL, result.ret_desc);
    }
    ctx.store.deleteMapping(row.id, hostId);
  });
}

export function volumeHosts(ctx: Ctx, attach: AttachService, name: string): Field[] {
  const row = ctx.store.volume(name);
  if (!row) throw notExist(`volume ${name}`);
  const mappings = ctx.store.mappings(row.id);
  const fields: Field[] = [[Key.HOST_NUM, String(mappings.length)]];
  mappings.forEach((m, i) => {
    const device = attach.deviceOf(row, m.host_id);
    fields.push([
      `host${i}`,
      encodeRecord({
        host_id: m.host_id,
        access_mode: m.access_mode,
        attached: device ? 1 : 0,
        dev_addr: device ?? '',
        online: isHostOnline(ctx, m.host_id) ? 1 : 0,
      }),
    ]);
  });
  return fields;
}

export function hostsList(ctx: Ctx): Field[] {
  const hosts = ctx.store.hosts();
  const fields: Field[] = [[Key.HOST_NUM, String(hosts.length)]];
  hosts.forEach((h, i) =>
    fields.push([
      `host${i}`,
      encodeRecord({
        host_id: h.host_id,
        local: h.host_id === ctx.hostId ? 1 : 0,
        online: isHostOnline(ctx, h.host_id) ? 1 : 0,
      }),
    ]),
  );
  return fields;
}
