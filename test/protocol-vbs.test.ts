import { describe, expect, it } from 'vitest';
import {
  encodeRecord,
  encodeReply,
  encodeRequest,
  findRequestEnd,
  parseRecord,
  parseReply,
  parseRequest,
  ProtocolError,
  RetCode,
} from '../src/protocol/vbs.js';

describe('VBS request codec', () => {
  it('encodes the original Cinder form byte for byte when not terminated', () => {
    const bytes = encodeRequest(
      'CREATE_VOLUME_REQ',
      { vol_name: 'volume-1', vol_size: 1024, pool_id: 'pool0', thin_flag: 1 },
      { terminate: false },
    );
    expect(bytes.toString()).toBe(
      '[CREATE_VOLUME_REQ]\nvol_name=volume-1\nvol_size=1024\npool_id=pool0\nthin_flag=1\n',
    );
    expect(findRequestEnd(bytes)).toBe(-1);
  });

  it('round-trips repeated keys in order and ends at the empty line', () => {
    const bytes = encodeRequest('QUERY_POOLS_CAPABILITY_REQ', { pool_num: 2, pool_id: ['p1', 'p2'] });
    expect(findRequestEnd(bytes)).toBe(bytes.length);
    const req = parseRequest(bytes);
    expect(req.type).toBe('QUERY_POOLS_CAPABILITY_REQ');
    expect(req.fields.getAll('pool_id')).toEqual(['p1', 'p2']);
    expect(req.fields.get('pool_num')).toBe('2');
  });

  it.each([
    ['no type line', 'vol_name=a\n'],
    ['a line without =', '[QUERY_VOLUME_REQ]\nvol_name\n'],
    ['a NUL byte', '[QUERY_VOLUME_REQ]\nvol_name=a\u0000b\n'],
    ['an empty request', '\n'],
    ['a bad key', '[QUERY_VOLUME_REQ]\n9x=1\n'],
  ])('refuses %s as MALFORMED', (_what, text) => {
    expect(() => parseRequest(Buffer.from(text))).toThrowError(ProtocolError);
    try {
      parseRequest(Buffer.from(text));
    } catch (e) {
      expect((e as ProtocolError).retcode).toBe(RetCode.MALFORMED);
    }
  });

  it('refuses invalid UTF-8 and oversized requests', () => {
    expect(() => parseRequest(Buffer.from([0x5b, 0x41, 0x5d, 0x0a, 0x61, 0x3d, 0xff, 0x0a]))).toThrow(/UTF-8/);
    expect(() => parseRequest(Buffer.alloc(64 * 1024 + 1, 0x61))).toThrow(/exceeds/);
    expect(() => encodeRequest('QUERY_VOLUME_REQ', { vol_name: 'x'.repeat(70 * 1024) })).toThrow(/exceeds/);
  });
});

describe('VBS reply and record codec', () => {
  it('round-trips records with characters that need escaping', () => {
    const body = encodeRecord({ status: 1, vol_name: 'v1', fault_reason: 'a,b=c [d] 50%' });
    expect(parseRecord(body)).toEqual({ status: '1', vol_name: 'v1', fault_reason: 'a,b=c [d] 50%' });
    const reply = parseReply(encodeReply(0, { volume0: body, volume1: encodeRecord({ status: 2 }) }));
    expect(reply.retcode).toBe(0);
    expect(reply.fields.records('volume').map((r) => r.status)).toEqual(['1', '2']);
  });

  it('refuses replies without a numeric retcode, and truncated records', () => {
    expect(() => parseReply(Buffer.from('volume0=[status=1]\n'))).toThrow(/no retcode/);
    expect(() => parseReply(Buffer.from('retcode=zero\n'))).toThrow(/not a number/);
    expect(() => parseReply(Buffer.from(''))).toThrow(/empty/);
    expect(() => parseRecord('[status=1,vol_na')).toThrow(/bracketed/);
  });

  it('sanitises control characters in reply values instead of failing', () => {
    const reply = parseReply(encodeReply(RetCode.INVALID_PARAMETER, { ret_desc: 'bad\nvalue' }));
    expect(reply.fields.get('ret_desc')).toBe('bad value');
  });
});
