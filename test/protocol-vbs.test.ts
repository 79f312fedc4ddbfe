// The VBS codec (src/protocol/vbs.ts): requests, replies and records byte for byte, then the edge cases the
// client relies on: malformed, truncated, oversized input, NUL bytes, invalid UTF-8, CRLF, quoted values and
// repeated keys.
import { describe, expect, it } from 'vitest';
import {
  encodeRecord,
  encodeReply,
  encodeRequest,
  findRequestEnd,
  MAX_REPLY_BYTES,
  parseRecord,
  parseReply,
  parseRequest,
  ProtocolError,
  RetCode,
} from '../src/protocol/vbs.js';

/** The retcode of the ProtocolError `fn` throws, or undefined when it does not throw. */
function retcodeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return (e as ProtocolError).retcode;
  }
  return undefined;
}

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

describe('request parsing', () => {
  it('accepts CRLF line ends and drops the \\r', () => {
    const req = parseRequest(Buffer.from('[QUERY_VOLUME_REQ]\r\nvol_name=v1\r\nrequest_id=r-1\r\n\r\n'));
    expect(req.type).toBe('QUERY_VOLUME_REQ');
    expect(req.fields.get('vol_name')).toBe('v1');
    expect(req.fields.get('request_id')).toBe('r-1');
    expect(findRequestEnd(Buffer.from('[A]\r\nk=v\r\n\r\n'))).toBe(12);
  });

  it('keeps quoted values verbatim, and = inside a value', () => {
    const req = parseRequest(Buffer.from('[IMPORT_IMAGE_REQ]\nimage_url="http://h/x?a=b"\nret=a=b=c\n'));
    expect(req.fields.get('image_url')).toBe('"http://h/x?a=b"');
    expect(req.fields.get('ret')).toBe('a=b=c');
  });

  it('keeps repeated keys in order; get() answers the first', () => {
    const req = parseRequest(
      Buffer.from('[QUERY_POOLS_CAPABILITY_REQ]\npool_num=3\npool_id=b\npool_id=a\npool_id=b\n'),
    );
    expect(req.fields.getAll('pool_id')).toEqual(['b', 'a', 'b']);
    expect(req.fields.get('pool_id')).toBe('b');
  });

  it('ignores what follows the empty line that ends the request', () => {
    const req = parseRequest(Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=v1\n\n[DELETE_VOLUME_REQ]\nvol_name=v1\n'));
    expect(req.type).toBe('QUERY_VOLUME_REQ');
    expect(req.fields.list).toEqual([['vol_name', 'v1']]);
  });

  it('a request cut inside a key is MALFORMED; cut inside a value, it parses the value it has', () => {
    expect(retcodeOf(() => parseRequest(Buffer.from('[CREATE_VOLUME_REQ]\nvol_name=v1\nvol_si')))).toBe(
      RetCode.MALFORMED,
    );
    // Framing (empty line, EOF or quiet period) is the server's job: the codec cannot see a cut value.
    expect(parseRequest(Buffer.from('[CREATE_VOLUME_REQ]\nvol_name=v1\nvol_size=10')).fields.get('vol_size')).toBe(
      '10',
    );
  });

  it.each([
    ['a NUL byte in a key', Buffer.from('[Q_REQ]\nvol\u0000name=1\n')],
    ['a lone continuation byte', Buffer.from([0x5b, 0x51, 0x5d, 0x0a, 0x6b, 0x3d, 0x80, 0x0a])],
    ['an overlong encoding of /', Buffer.from([0x5b, 0x51, 0x5d, 0x0a, 0x6b, 0x3d, 0xc0, 0xaf, 0x0a])],
    ['an encoded surrogate', Buffer.from([0x5b, 0x51, 0x5d, 0x0a, 0x6b, 0x3d, 0xed, 0xa0, 0x80, 0x0a])],
    ['a truncated multi-byte sequence', Buffer.from([0x5b, 0x51, 0x5d, 0x0a, 0x6b, 0x3d, 0xe2, 0x82])],
    ['a control character in a value', Buffer.from('[Q_REQ]\nk=a\u0007b\n')],
    ['an ESC in a value', Buffer.from('[Q_REQ]\nk=\u001b[31m\n')],
    ['a bare \\r inside a line', Buffer.from('[Q_REQ]\nk=a\rb\n')],
    ['a type line without brackets', Buffer.from('Q_REQ\nk=v\n')],
    ['an empty type', Buffer.from('[]\nk=v\n')],
    ['an empty key', Buffer.from('[Q_REQ]\n=v\n')],
    ['a key with a space', Buffer.from('[Q_REQ]\nvol name=v\n')],
  ])('refuses %s as MALFORMED', (_what, bytes) => {
    expect(retcodeOf(() => parseRequest(bytes))).toBe(RetCode.MALFORMED);
  });

  it('accepts a TAB inside a value', () => {
    expect(parseRequest(Buffer.from('[Q_REQ]\nk=a\tb\n')).fields.get('k')).toBe('a\tb');
  });

  it('refuses oversized requests as TOO_LARGE, on both sides', () => {
    expect(retcodeOf(() => parseRequest(Buffer.alloc(64 * 1024 + 1, 0x61)))).toBe(RetCode.TOO_LARGE);
    expect(retcodeOf(() => encodeRequest('Q_REQ', { k: 'x'.repeat(64 * 1024) }))).toBe(RetCode.TOO_LARGE);
  });

  it('refuses to encode a value with a newline (which would inject a line)', () => {
    expect(retcodeOf(() => encodeRequest('Q_REQ', { vol_name: 'v1\nauth_token=x' }))).toBe(RetCode.MALFORMED);
    expect(retcodeOf(() => encodeRequest('Q_REQ', [['bad key', 'v']]))).toBe(RetCode.MALFORMED);
    expect(retcodeOf(() => encodeRequest('lower_req', {}))).toBe(RetCode.MALFORMED);
  });
});

describe('reply parsing', () => {
  it('accepts CRLF, blank lines and repeated keys', () => {
    const reply = parseReply(
      Buffer.from('retcode=0\r\n\r\ncapability=list\r\ncapability=qos\r\nproduct=SDSHypervisor\r\n'),
    );
    expect(reply.retcode).toBe(0);
    expect(reply.fields.getAll('capability')).toEqual(['list', 'qos']);
    expect(reply.fields.get('product')).toBe('SDSHypervisor');
  });

  it('reads negative retcodes and a retcode that is not first', () => {
    expect(parseReply(Buffer.from('ret_desc=x\nretcode=-900079\n')).retcode).toBe(RetCode.NOT_EXIST);
  });

  it.each([
    ['a NUL byte', Buffer.from('retcode=0\nvolume0=[status=1\u0000]\n'), RetCode.MALFORMED],
    [
      'invalid UTF-8',
      Buffer.from([0x72, 0x65, 0x74, 0x63, 0x6f, 0x64, 0x65, 0x3d, 0x30, 0x0a, 0x61, 0x3d, 0xff, 0x0a]),
      RetCode.MALFORMED,
    ],
    ['a line without =', Buffer.from('retcode=0\ngarbage\n'), RetCode.MALFORMED],
    ['no retcode', Buffer.from('ret_desc=ok\n'), RetCode.MALFORMED],
    ['a non-numeric retcode', Buffer.from('retcode=0x10\n'), RetCode.MALFORMED],
    ['an 11-digit retcode', Buffer.from('retcode=12345678901\n'), RetCode.MALFORMED],
    ['an empty reply', Buffer.alloc(0), RetCode.MALFORMED],
    ['only blank lines', Buffer.from('\n\r\n\n'), RetCode.MALFORMED],
  ])('refuses %s', (_what, bytes, code) => {
    expect(retcodeOf(() => parseReply(bytes))).toBe(code);
  });

  it('refuses replies over 1 MiB, accepts one at exactly 1 MiB', () => {
    const head = 'retcode=0\nx=';
    const exact = Buffer.from(head + 'a'.repeat(MAX_REPLY_BYTES - head.length - 1) + '\n');
    expect(exact.length).toBe(MAX_REPLY_BYTES);
    expect(parseReply(exact).retcode).toBe(0);
    expect(retcodeOf(() => parseReply(Buffer.concat([exact, Buffer.from('y')])))).toBe(RetCode.TOO_LARGE);
  });

  it('a truncated record surfaces when its records are read', () => {
    const reply = parseReply(Buffer.from('retcode=0\nvolume0=[status=1,vol_name=v'));
    expect(retcodeOf(() => reply.fields.records('volume'))).toBe(RetCode.MALFORMED);
  });

  it('orders records numerically, not lexically', () => {
    const lines = [
      'retcode=0',
      ...Array.from({ length: 12 }, (_, i) => `pool${11 - i}=${encodeRecord({ stor_id: `p${11 - i}` })}`),
    ];
    const reply = parseReply(Buffer.from(lines.join('\n') + '\n'));
    expect(reply.fields.records('pool').map((r) => r.stor_id)).toEqual(Array.from({ length: 12 }, (_, i) => `p${i}`));
  });

  it('encodeReply puts retcode first and drops a second one', () => {
    expect(
      encodeReply(0, [
        ['retcode', '5'],
        ['a', 'b'],
      ]).toString(),
    ).toBe('retcode=0\na=b\n');
  });
});

describe('record parsing', () => {
  it('parses an empty record and keeps the last of repeated record keys', () => {
    expect(Object.keys(parseRecord('[]'))).toEqual([]);
    expect(parseRecord('[a=1,a=2]').a).toBe('2');
  });

  it('decodes percent-encoded separators and keeps UTF-8', () => {
    expect(parseRecord('[fault_reason=disk%2C gone%3D yes %5Bx%5D 100%25,name=záb]')).toEqual({
      fault_reason: 'disk, gone= yes [x] 100%',
      name: 'záb',
    });
  });

  it('gives records a null prototype, so a __proto__ key is plain data', () => {
    const r = parseRecord('[__proto__=x,constructor=y]');
    expect(Object.getPrototypeOf(r)).toBeNull();
    expect(r['__proto__']).toBe('x');
  });

  it.each([
    ['no brackets', 'status=1'],
    ['a missing ]', '[status=1'],
    ['a part without =', '[status=1,vol_name]'],
    ['an empty key', '[=1]'],
    ['a bad key', '[1st=1]'],
    ['a bad percent escape', '[a=%ZZ]'],
    ['a lone %', '[a=50%]'],
    ['a percent-encoded invalid UTF-8 byte', '[a=%FF]'],
  ])('refuses %s', (_what, body) => {
    expect(retcodeOf(() => parseRecord(body))).toBe(RetCode.MALFORMED);
  });
});
