// Creates on the extended level: a name already taken answers the object holding it (the controller judges
// whether it is the one asked for), and a bare OK of a part-1 VBS is followed by a query of the object.
import { RecordPrefix, Requests } from '../protocol/catalog.js';
import { RetCode, type Field, type VbsReply } from '../protocol/vbs.js';
import type { CallOptions, SnapshotInfo, VolumeInfo } from './backend.js';
import { snapshotFields, type CreateAsked } from './fields.js';
import { nameHolder } from './queries.js';
import { snapshotFromRecord, volumeFromRecord } from './records.js';
import type { VbsSession } from './session.js';

/** The client's queries of one object by name, on whatever level it speaks. */
export interface Lookups {
  getVolume(name: string, opts?: CallOptions): Promise<VolumeInfo | undefined>;
  getSnapshot(name: string, opts?: CallOptions): Promise<SnapshotInfo | undefined>;
}

export class CreateRequests {
  constructor(
    private readonly s: VbsSession,
    private readonly lookups: Lookups,
  ) {}

  /** CREATE_SNAPSHOT_REQ: the snapshot made, or the one holding the name. */
  async snapshot(name: string, volumeName: string, opts?: CallOptions): Promise<SnapshotInfo> {
    const type = Requests.CREATE_SNAPSHOT.type;
    const reply = await this.s.request(type, snapshotFields(name, volumeName), opts);
    if (reply.retcode === RetCode.OK) {
      return (
        this.s.firstRecord(reply, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r, name)) ??
        (await this.mustGetSnapshot(name, type, opts))
      );
    }
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.s.replyError(type, reply);
    const existing =
      this.s.firstRecord(reply, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r, name)) ??
      (await this.lookups.getSnapshot(name, opts));
    // The client reports what holds the name; the controller judges whether it is the one asked for.
    return nameHolder(this.s, type, reply, 'snapshot', name, existing);
  }

  /** CREATE_VOLUME_REQ and its kin: the volume made, or the one holding the name. */
  async volume(
    type: string,
    fields: Field[],
    want: CreateAsked,
    opts: CallOptions | undefined,
    timeoutMs: number,
  ): Promise<VolumeInfo> {
    const reply = await this.s.request(type, fields, opts, timeoutMs);
    if (reply.retcode === RetCode.OK) return this.volumeFromReplyOrQuery(reply, want.name, opts);
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.s.replyError(type, reply);
    // The name is taken: the same volume asked again (a retry, a repeated CSI call) is success.
    const existing =
      this.s.firstRecord(reply, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, want.name)) ??
      (await this.lookups.getVolume(want.name, opts));
    const holder = nameHolder(this.s, type, reply, 'volume', want.name, existing);
    // The client reports what holds the name; the controller judges, by CSI's rules, whether it is the one asked for.
    this.s.logger?.debug(
      { request: type, volume: want.name },
      'volume name already taken; reporting the existing volume',
    );
    return holder;
  }

  async volumeFromReplyOrQuery(reply: VbsReply, name: string, opts?: CallOptions): Promise<VolumeInfo> {
    // A part-1 VBS answers a bare retcode=0: ask for the record.
    return (
      this.s.firstRecord(reply, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, name)) ??
      (await this.mustGetVolume(name, 'reply', opts))
    );
  }

  async mustGetVolume(name: string, after: string, opts?: CallOptions): Promise<VolumeInfo> {
    const volume = await this.lookups.getVolume(name, opts);
    if (volume === undefined)
      throw this.s.error('NotFound', `volume ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return volume;
  }

  private async mustGetSnapshot(name: string, after: string, opts?: CallOptions): Promise<SnapshotInfo> {
    const snapshot = await this.lookups.getSnapshot(name, opts);
    if (snapshot === undefined)
      throw this.s.error('NotFound', `snapshot ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return snapshot;
  }
}
