// The controller's original-level parts as units: the capabilities per level, the temporary snapshot name of
// a clone, and the clone through a temporary snapshot resumed after a crash at each step (in-memory back end).
import { describe, expect, it } from 'vitest';
import {
  cloneSnapshotName,
  cloneThroughSnapshot,
  controllerCapabilities,
  EXTENDED_CONTROLLER_CAPABILITIES,
  ORIGINAL_CONTROLLER_CAPABILITIES,
  removeCloneLeftovers,
} from '../src/controller/original.js';
import { isValidName } from '../src/protocol/vbs.js';
import { MiB } from '../src/sds/backend.js';
import { SdsError } from '../src/sds/errors.js';
import { FakeBackend } from './support/fake-backend.js';

describe('capabilities per level', () => {
  it('the original level advertises a subset, without list, record, QoS-change or read-only publish capabilities', () => {
    expect(controllerCapabilities('extended')).toBe(EXTENDED_CONTROLLER_CAPABILITIES);
    for (const c of ORIGINAL_CONTROLLER_CAPABILITIES) expect(EXTENDED_CONTROLLER_CAPABILITIES).toContain(c);
    for (const c of [
      'LIST_VOLUMES',
      'LIST_SNAPSHOTS',
      'GET_VOLUME',
      'GET_SNAPSHOT',
      'MODIFY_VOLUME',
      'VOLUME_CONDITION',
      'PUBLISH_READONLY',
      'LIST_VOLUMES_PUBLISHED_NODES',
    ]) {
      expect(controllerCapabilities('original')).not.toContain(c);
    }
  });
});

describe('the temporary snapshot of a clone', () => {
  it('is derived from the target alone, a valid back-end name that no CSI name can take', () => {
    expect(cloneSnapshotName('pvc-1')).toBe(cloneSnapshotName('pvc-1'));
    expect(cloneSnapshotName('pvc-1')).not.toBe(cloneSnapshotName('pvc-2'));
    const long = 'a'.repeat(95);
    for (const target of ['pvc-1', `H_${'f'.repeat(40)}`, long]) {
      expect(isValidName(cloneSnapshotName(target))).toBe(true);
      expect(cloneSnapshotName(target)).toMatch(/[A-Z]/); // upper case: never a pass-through CSI name
    }
  });
});

describe('a clone through a temporary snapshot', () => {
  const spec = { name: 'pvc-clone', sizeBytes: 16 * MiB, poolId: 'pool0', sourceVolumeName: 'pvc-src' };

  async function withSource(): Promise<FakeBackend> {
    const backend = new FakeBackend();
    await backend.createVolume({ name: 'pvc-src', sizeBytes: 16 * MiB, poolId: 'pool0' });
    return backend;
  }

  it('makes the clone and leaves no temporary snapshot', async () => {
    const backend = await withSource();
    const clone = await cloneThroughSnapshot(backend, spec, {});
    expect(clone).toMatchObject({
      name: 'pvc-clone',
      source: { type: 'volume', name: 'pvc-src' },
      cloneType: 'linked',
    });
    expect([...backend.snapshots.keys()]).toEqual([]);
    expect([...backend.volumes.keys()].sort()).toEqual(['pvc-clone', 'pvc-src']);
  });

  it('resumes after a crash that left the temporary snapshot, or the clone too', async () => {
    const backend = await withSource();
    await backend.createSnapshot(cloneSnapshotName('pvc-clone'), 'pvc-src');
    await cloneThroughSnapshot(backend, spec, {});
    expect([...backend.snapshots.keys()]).toEqual([]);
    await backend.createSnapshot(cloneSnapshotName('pvc-other'), 'pvc-src');
    await backend.createVolumeFromSnapshot({
      ...spec,
      name: 'pvc-other',
      snapshotName: cloneSnapshotName('pvc-other'),
      cloneType: 'linked',
    });
    await cloneThroughSnapshot(backend, { ...spec, name: 'pvc-other' }, {});
    expect([...backend.snapshots.keys()]).toEqual([]);
  });

  it('keeps the temporary snapshot when the back end refuses to delete it, and DeleteVolume removes it', async () => {
    const backend = await withSource();
    const realDelete = backend.deleteSnapshot.bind(backend);
    let refuse = true;
    backend.deleteSnapshot = async (name: string) => {
      if (refuse) throw new SdsError('HasDependents', `${name} has dependents`);
      return realDelete(name);
    };
    await cloneThroughSnapshot(backend, spec, {});
    expect([...backend.snapshots.keys()]).toEqual([cloneSnapshotName('pvc-clone')]);
    refuse = false;
    await backend.deleteVolume('pvc-clone');
    await removeCloneLeftovers(backend, 'pvc-clone', {});
    expect([...backend.snapshots.keys()]).toEqual([]);
  });
});
