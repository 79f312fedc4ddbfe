// Property tests of the shared codecs: round-trips over arbitrary safe values, and parsers that never throw
// anything unexpected on arbitrary bytes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseKv } from '../src/protocol/kv.js';
import {
  encodeRecord,
  encodeReply,
  encodeRequest,
  findRequestEnd,
  parseRecord,
  parseReply,
  parseRequest,
  ProtocolError,
} from '../src/protocol/vbs.js';
import { wireText } from './support/wire-arbitraries.js';

const key = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,20}$/);
const requestType = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,30}$/);
/** Any well-formed Unicode text; the codecs must escape or refuse whatever needs it. */
const text = fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => Buffer.from(s, 'utf8').toString('utf8') === s);
/** A value a request line may carry: no control characters but TAB. */
const lineValue = text.filter((s) => !/[\u0000-\u0008\u000a-\u001f\u007f]/.test(s));
const fields = fc.array(fc.tuple(key, lineValue), { maxLength: 12 });

/** Bytes biased towards the protocol's own shapes, so the parsers get past their first check. */
const protocolishBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  wireText(40, 8).map((bytes) => new Uint8Array(bytes)),
  fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.nat({ max: 40 })).map(([junk, at]) => {
    const valid = Buffer.from('retcode=0\nvolume0=[status=1,vol_name=v]\n');
    return new Uint8Array(Buffer.concat([valid.subarray(0, Math.min(at, valid.length)), junk]));
  }),
);

function onlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
  }
}

describe('codec properties', () => {
  it('encodeRequest → parseRequest gives back the type and the fields, in order', () => {
    fc.assert(
      fc.property(requestType, fields, fc.boolean(), (type, list, terminate) => {
        const bytes = encodeRequest(type, list, { terminate });
        expect(findRequestEnd(bytes)).toBe(terminate ? bytes.length : -1);
        const parsed = parseRequest(bytes);
        expect(parsed.type).toBe(type);
        expect(parsed.fields.list).toEqual(list);
      }),
      { numRuns: 500 },
    );
  });

  it('encodeRecord → parseRecord gives back any record of well-formed strings', () => {
    fc.assert(
      fc.property(fc.dictionary(key, text, { maxKeys: 10 }), (record) => {
        const parsed = parseRecord(encodeRecord(record));
        expect({ ...parsed }).toEqual({ ...record });
      }),
      { numRuns: 500 },
    );
  });

  it('encodeReply → parseReply gives back the retcode and the fields, records included', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -999_999_999, max: 999_999_999 }),
        fc.array(
          fc.tuple(
            key.filter((k) => k !== 'retcode'),
            lineValue,
          ),
          { maxLength: 8 },
        ),
        fc.array(fc.dictionary(key, text, { maxKeys: 6 }), { maxLength: 4 }),
        (retcode, list, records) => {
          const all = [...list, ...records.map((r, i): [string, string] => [`rec${i}`, encodeRecord(r)])];
          const reply = parseReply(encodeReply(retcode, all));
          expect(reply.retcode).toBe(retcode);
          expect(reply.fields.list.slice(1)).toEqual(all);
          expect(reply.fields.records('rec').map((r) => ({ ...r }))).toEqual(records.map((r) => ({ ...r })));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('parseReply and parseRequest throw nothing but ProtocolError on arbitrary bytes', () => {
    fc.assert(
      fc.property(protocolishBytes, (bytes) => {
        onlyProtocolErrors(() => {
          const reply = parseReply(bytes);
          expect(Number.isInteger(reply.retcode)).toBe(true);
          for (const [k] of reply.fields.list) if (/^volume\d+$/.test(k)) reply.fields.records('volume');
        });
        onlyProtocolErrors(() => parseRequest(bytes));
        const end = findRequestEnd(Buffer.from(bytes));
        expect(end === -1 || (end >= 2 && end <= bytes.length)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('parseRecord throws nothing but ProtocolError on arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc.string({ maxLength: 60 }).map((s) => `[${s}]`),
        ),
        (body) => {
          onlyProtocolErrors(() => parseRecord(body));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('parseKv never throws, on arbitrary bytes decoded as UTF-8', () => {
    fc.assert(
      fc.property(protocolishBytes, (bytes) => {
        const parsed = parseKv(Buffer.from(bytes).toString('utf8'));
        expect(parsed.garbage.length).toBeLessThanOrEqual(5);
        for (const line of parsed.garbage) expect(line).not.toMatch(/[\u0000-\u001f]/);
      }),
      { numRuns: 2_000 },
    );
  });
});
