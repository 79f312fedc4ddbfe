// The two shapes most requests have: one that must succeed, and a query of one object by name.
import type { KeyName, RecordPrefixName } from '../protocol/catalog.js';
import { RetCode, type Field, type VbsReply } from '../protocol/vbs.js';
import type { CallOptions } from './backend.js';
import type { VbsSession } from './session.js';

/** Sends `type` with `fields`; its reply, or the reply's error unless it is OK. */
export async function requestOk(s: VbsSession, type: string, fields: Field[], opts?: CallOptions): Promise<VbsReply> {
  const reply = await s.request(type, fields, opts);
  if (reply.retcode !== RetCode.OK) throw s.replyError(type, reply);
  return reply;
}

/** A query of one object by name: its record, or undefined when the VBS says it does not exist. */
export async function queryOne<T>(
  s: VbsSession,
  type: string,
  key: KeyName,
  name: string,
  prefix: RecordPrefixName,
  parse: (record: Record<string, string>, name: string) => T,
  opts?: CallOptions,
): Promise<T | undefined> {
  const reply = await s.request(type, [[key, name]], opts);
  if (reply.retcode === RetCode.NOT_EXIST) return undefined;
  if (reply.retcode !== RetCode.OK) throw s.replyError(type, reply);
  const found = s.firstRecord(reply, prefix, (r) => parse(r, name));
  if (found === undefined) throw s.error('Protocol', `${type}: success reply without ${prefix}0`);
  return found;
}

/**
 * What holds a name a create found taken (ALREADY_EXISTS): the object the reply or a query showed. None shown is
 * AlreadyExists (retry); one being deleted is Busy.
 */
export function nameHolder<T extends { state: string }>(
  s: VbsSession,
  type: string,
  reply: VbsReply,
  what: 'volume' | 'snapshot',
  name: string,
  existing: T | undefined,
): T {
  if (existing === undefined) {
    throw s.error(
      'AlreadyExists',
      `${type}: ${what} name ${name} is taken, but the VBS shows no such ${what}; retry`,
      reply.retcode,
    );
  }
  if (existing.state === 'deleting') {
    throw s.error('Busy', `${type}: ${what} ${name} exists and is being deleted; retry later`, RetCode.BUSY);
  }
  return existing;
}
