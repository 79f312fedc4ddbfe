// Volume-to-host mappings (docs/socket-api.md): requests of the extended level only.
import { Key, RecordPrefix, Requests } from '../protocol/catalog.js';
import type { Field } from '../protocol/vbs.js';
import type { CallOptions, HostMapping } from './backend.js';
import { checkName } from './fields.js';
import { requestOk } from './queries.js';
import { hostMappingFromRecord } from './records.js';
import type { VbsSession } from './session.js';

export class MappingRequests {
  constructor(private readonly s: VbsSession) {}

  async map(
    name: string,
    hostId: string,
    options: { readOnly: boolean; exclusive: boolean },
    opts?: CallOptions,
  ): Promise<void> {
    const access: Field[] = [
      [Key.ACCESS_MODE, options.readOnly ? 'ro' : 'rw'],
      [Key.EXCLUSIVE, options.exclusive ? '1' : '0'],
    ];
    await this.hostRequest(Requests.MAP_VOLUME.type, name, hostId, access, opts);
  }

  async unmap(name: string, hostId: string, options: { force?: boolean } = {}, opts?: CallOptions): Promise<void> {
    const force: Field[] = [[Key.FORCE, options.force ? '1' : '0']];
    await this.hostRequest(Requests.UNMAP_VOLUME.type, name, hostId, force, opts);
  }

  async hosts(name: string, opts?: CallOptions): Promise<HostMapping[]> {
    checkName(Key.VOL_NAME, name);
    this.s.extendedOnly(Requests.QUERY_VOLUME_HOSTS.type);
    const reply = await requestOk(this.s, Requests.QUERY_VOLUME_HOSTS.type, [[Key.VOL_NAME, name]], opts);
    return this.s.counted(reply, Key.HOST_NUM, RecordPrefix.HOST, hostMappingFromRecord);
  }

  /** A request (extended) about volume `name` on host `hostId`, with its own keys after those two. */
  private async hostRequest(
    type: string,
    name: string,
    hostId: string,
    more: Field[],
    opts?: CallOptions,
  ): Promise<void> {
    checkName(Key.VOL_NAME, name);
    checkName(Key.HOST_ID, hostId);
    this.s.extendedOnly(type);
    await requestOk(this.s, type, [[Key.VOL_NAME, name], [Key.HOST_ID, hostId], ...more], opts);
  }
}
