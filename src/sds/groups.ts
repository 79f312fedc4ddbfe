// Group snapshots and extent maps (docs/socket-api.md §2.6): requests of the extended level only.
import type { CallOptions, ExtentPage, GroupSnapshotInfo, GroupSnapshotSpec } from './backend.js';
import { checkName, checkWord, wholeNumber } from './fields.js';
import { extentPageFromReply, groupFromRecord, snapshotFromRecord } from './records.js';
import type { VbsSession } from './session.js';
import { Key, Requests, RecordPrefix } from '../protocol/catalog.js';
import { MAX_LIST_LIMIT, RetCode, type Field, type VbsReply } from '../protocol/vbs.js';

export class GroupRequests {
  constructor(private readonly s: VbsSession) {}

  async create(spec: GroupSnapshotSpec, opts?: CallOptions): Promise<GroupSnapshotInfo> {
    const type = Requests.CREATE_GROUP_SNAPSHOT.type;
    this.s.extendedOnly(type);
    checkName(Key.GROUP_NAME, spec.name);
    if (spec.volumeNames.length === 0)
      throw this.s.error('InvalidParameter', 'vol_name: at least one member volume is needed');
    const wanted = [...new Set(spec.volumeNames.map((v) => checkName(Key.VOL_NAME, v)))].sort();
    if (wanted.length !== spec.volumeNames.length)
      throw this.s.error('InvalidParameter', 'vol_name: a member volume is listed twice');
    const fields: Field[] = [[Key.GROUP_NAME, spec.name], ...wanted.map((v): Field => [Key.VOL_NAME, v])];
    if (spec.quiesce !== undefined)
      fields.push([Key.QUIESCE, checkWord(Key.QUIESCE, spec.quiesce, ['freeze', 'flush'])]);
    if (spec.freezeTimeoutMs !== undefined)
      fields.push([Key.FREEZE_TIMEOUT_MS, String(wholeNumber('freezeTimeoutMs', spec.freezeTimeoutMs))]);
    // The cut holds file systems frozen at most freeze_timeout_ms (60 s at most); the rest is quick.
    const timeout = this.s.requestTimeoutMs + (spec.freezeTimeoutMs ?? 10_000);
    const reply = await this.s.request(type, fields, opts, timeout);
    if (reply.retcode === RetCode.OK) return this.groupFromReply(reply, spec.name, type, opts);
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.s.replyError(type, reply);
    const existing = reply.fields.has('group0')
      ? this.groupFromReplyNow(reply, spec.name)
      : await this.get(spec.name, opts);
    if (existing === undefined) {
      // The name was free, but a member's derived snapshot name was not: ret_desc says which.
      throw this.s.replyError(type, reply);
    }
    if (existing.state === 'deleting')
      throw this.s.error(
        'Busy',
        `${type}: group snapshot ${spec.name} exists and is being deleted; retry later`,
        RetCode.BUSY,
      );
    const differences: string[] = [];
    if (existing.volumeNames.join(':') !== wanted.join(':')) {
      differences.push(`its member volumes are ${existing.volumeNames.join(', ')}, asked ${wanted.join(', ')}`);
    }
    if (spec.quiesce !== undefined && existing.quiesce !== spec.quiesce)
      differences.push(`it was quiesced by ${existing.quiesce}, asked ${spec.quiesce}`);
    if (differences.length > 0)
      throw this.s.error(
        'AlreadyExists',
        `group snapshot ${spec.name} already exists: ${differences.join('; ')}`,
        reply.retcode,
      );
    return existing;
  }

  async get(name: string, opts?: CallOptions): Promise<GroupSnapshotInfo | undefined> {
    checkName(Key.GROUP_NAME, name);
    this.s.extendedOnly(Requests.QUERY_GROUP_SNAPSHOT.type);
    const reply = await this.s.request(Requests.QUERY_GROUP_SNAPSHOT.type, [[Key.GROUP_NAME, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(Requests.QUERY_GROUP_SNAPSHOT.type, reply);
    return this.groupFromReplyNow(reply, name);
  }

  async extents(name: string, page: { offset?: number; limit?: number } = {}, opts?: CallOptions): Promise<ExtentPage> {
    checkName(Key.SNAP_NAME, name);
    return this.extentPage(Requests.QUERY_SNAPSHOT_EXTENTS.type, [[Key.SNAP_NAME, name]], page, opts);
  }

  async delta(
    baseName: string,
    targetName: string,
    page: { offset?: number; limit?: number } = {},
    opts?: CallOptions,
  ): Promise<ExtentPage> {
    checkName(Key.BASE_SNAP_NAME, baseName);
    checkName(Key.SNAP_NAME, targetName);
    return this.extentPage(
      Requests.QUERY_SNAPSHOT_DELTA.type,
      [
        [Key.BASE_SNAP_NAME, baseName],
        [Key.SNAP_NAME, targetName],
      ],
      page,
      opts,
    );
  }

  private async extentPage(
    type: string,
    fields: Field[],
    page: { offset?: number; limit?: number },
    opts?: CallOptions,
  ): Promise<ExtentPage> {
    const offset = wholeNumber('offset', page.offset ?? 0);
    const all: Field[] = [...fields, [Key.OFFSET, String(offset)]];
    if (page.limit !== undefined) {
      if (!Number.isInteger(page.limit) || page.limit < 1 || page.limit > MAX_LIST_LIMIT)
        throw this.s.error('InvalidParameter', `limit: must be 1-${MAX_LIST_LIMIT}`);
      all.push([Key.LIMIT, String(page.limit)]);
    }
    this.s.extendedOnly(type);
    const reply = await this.s.request(type, all, opts);
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(type, reply);
    return this.s.parsing(() => extentPageFromReply(reply.fields, offset));
  }

  groupFromReplyNow(reply: VbsReply, name: string): GroupSnapshotInfo {
    const snapshots = this.s.counted(reply, Key.SNAP_NUM, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r));
    const group = this.s.firstRecord(reply, RecordPrefix.GROUP, (r) => groupFromRecord(r, snapshots, name));
    if (group === undefined) throw this.s.error('Protocol', 'group snapshot reply without group0');
    return group;
  }

  private async groupFromReply(
    reply: VbsReply,
    name: string,
    after: string,
    opts?: CallOptions,
  ): Promise<GroupSnapshotInfo> {
    if (reply.fields.has('group0')) return this.groupFromReplyNow(reply, name);
    const group = await this.get(name, opts);
    if (group === undefined)
      throw this.s.error(
        'NotFound',
        `group snapshot ${name} does not exist after ${after} succeeded`,
        RetCode.NOT_EXIST,
      );
    return group;
  }
}
