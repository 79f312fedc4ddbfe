// src/server/errors.ts: each room's typed error reaches its gRPC code by its type, not by a class name.
import { describe, expect, it } from 'vitest';
import { ConnectorError } from '../src/connector/errors.js';
import { KubeError } from '../src/kube/errors.js';
import { MountError } from '../src/mount/errors.js';
import { SdsError } from '../src/sds/errors.js';
import { CsiError, status, toGrpcFailure } from '../src/server/errors.js';

describe('toGrpcFailure', () => {
  it.each([
    [new SdsError('NoSpace', 'pool full'), status.RESOURCE_EXHAUSTED],
    [new ConnectorError('VolumeNotFound', 'no such volume', 50159002), status.NOT_FOUND],
    [new ConnectorError('Busy', 'attach running'), status.ABORTED],
    [new KubeError('Forbidden', 'rbac', 403), status.PERMISSION_DENIED],
    [new MountError('Conflict', 'another filesystem'), status.ALREADY_EXISTS],
    [new CsiError(status.OUT_OF_RANGE, 'too big'), status.OUT_OF_RANGE],
  ])('%s → its code', (err, code) => {
    expect(toGrpcFailure(err)).toEqual({ code, details: err.message });
  });

  it('keeps the extra fields of the room errors', () => {
    expect(new ConnectorError('Failed', 'x', 42).code).toBe(42);
    expect(new KubeError('Rejected', 'x', 422).httpStatus).toBe(422);
    expect(new MountError('Busy', 'x', { cause: 'c' }).cause).toBe('c');
  });

  it('maps an error that only looks like a room error by its name and kind to INTERNAL', () => {
    const impostor = Object.assign(new Error('looks like one'), { name: 'ConnectorError', kind: 'VolumeNotFound' });
    expect(toGrpcFailure(impostor)).toEqual({ code: status.INTERNAL, details: 'looks like one' });
  });

  it('maps anything else to INTERNAL with its text', () => {
    expect(toGrpcFailure(new TypeError(''))).toEqual({ code: status.INTERNAL, details: 'TypeError' });
    expect(toGrpcFailure('plain string')).toEqual({ code: status.INTERNAL, details: 'plain string' });
  });
});
