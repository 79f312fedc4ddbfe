// Deletes on the VBS are asynchronous: DELETE_* is accepted, and QUERY_* says when the object is gone.
import { Key, RecordPrefix, Requests } from '../protocol/catalog.js';
import { RetCode, type VbsReply } from '../protocol/vbs.js';
import type { CallOptions } from './backend.js';
import { isSdsError } from './errors.js';
import { snapshotFromRecord, volumeFromRecord } from './records.js';
import type { VbsSession } from './session.js';

/** The delete and query requests of each kind of object, and the key naming it. */
const DELETES = {
  volume: { deleteType: Requests.DELETE_VOLUME.type, queryType: Requests.QUERY_VOLUME.type, key: Key.VOL_NAME },
  snapshot: { deleteType: Requests.DELETE_SNAPSHOT.type, queryType: Requests.QUERY_SNAPSHOT.type, key: Key.SNAP_NAME },
  group: {
    deleteType: Requests.DELETE_GROUP_SNAPSHOT.type,
    queryType: Requests.QUERY_GROUP_SNAPSHOT.type,
    key: Key.GROUP_NAME,
  },
} as const;

export type DeleteKind = keyof typeof DELETES;

export class DeleteWaiter {
  constructor(
    private readonly s: VbsSession,
    /** how long a delete may take to complete after the VBS accepted it */
    private readonly timeoutMs: number,
    private readonly poll: { initialDelayMs: number; maxDelayMs: number },
    /** a group snapshot's state in a QUERY_GROUP_SNAPSHOT reply (groups.ts parses those) */
    private readonly groupState: (reply: VbsReply, name: string) => string | undefined,
  ) {}

  /** DELETE_*, then poll QUERY_* until the VBS says the object is gone (its deletes are asynchronous). */
  async deleteAndWait(kind: DeleteKind, name: string, opts?: CallOptions): Promise<void> {
    const { deleteType, key } = DELETES[kind];
    const reply = await this.s.request(deleteType, [[key, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return;
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(deleteType, reply);
    // Our VBS says when the delete already completed; any other VBS is polled until NOT_EXIST.
    if (reply.fields.get(Key.DELETED) === '1') return;
    await this.pollUntilGone(kind, name, opts);
  }

  /** Polls QUERY_* after an accepted DELETE_* until the VBS says the object is gone, bounded. */
  async pollUntilGone(kind: DeleteKind, name: string, opts?: CallOptions): Promise<void> {
    const { deleteType, queryType, key } = DELETES[kind];
    await this.s.withCall(opts, async (signal) => {
      const pollOpts: CallOptions = { ...opts, signal };
      const deadline = Date.now() + this.timeoutMs;
      const stillThere = (state: string | undefined) =>
        this.s.error(
          'Timeout',
          `${deleteType} ${name}: accepted, but still there after ${this.timeoutMs} ms (state ${state ?? 'unknown'})`,
        );
      let delay = this.poll.initialDelayMs;
      let lastState: string | undefined;
      for (;;) {
        const budget = Math.max(1, Math.min(this.s.requestTimeoutMs, deadline - Date.now()));
        let poll: VbsReply;
        try {
          poll = await this.s.request(queryType, [[key, name]], pollOpts, budget);
        } catch (err) {
          // A poll whose time the delete's own bound cut short (a late wake-up on a loaded host can leave it
          // a few ms): the delete is as unfinished as the last answer said, not of unknown outcome.
          if (budget < this.s.requestTimeoutMs && isSdsError(err, 'Timeout') && !signal.aborted)
            throw stillThere(lastState);
          throw err;
        }
        if (poll.retcode === RetCode.NOT_EXIST) return;
        if (poll.retcode !== RetCode.OK) throw this.s.replyError(queryType, poll);
        lastState = this.stateIn(poll, key, name);
        if (Date.now() + delay > deadline) throw stillThere(lastState);
        await this.s.sleep(delay, signal, `waiting for ${deleteType} to complete`);
        delay = Math.min(delay * 2, this.poll.maxDelayMs);
      }
    });
  }

  /** The object's state in a QUERY_* reply (the original level's records carry only `status`). */
  private stateIn(poll: VbsReply, key: (typeof DELETES)[DeleteKind]['key'], name: string): string | undefined {
    if (this.s.level === 'original')
      return poll.fields.records(key === Key.VOL_NAME ? RecordPrefix.VOLUME : RecordPrefix.SNAPSHOT)[0]?.status;
    if (key === Key.VOL_NAME)
      return this.s.firstRecord(poll, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, name))?.state;
    if (key === Key.GROUP_NAME) return this.groupState(poll, name);
    return this.s.firstRecord(poll, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r, name))?.state;
  }
}
