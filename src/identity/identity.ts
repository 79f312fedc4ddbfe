// CSI Identity service: who we are, what we offer, and whether the back end answers.
import type { GetPluginCapabilitiesResponse } from '../generated/csi/v1/GetPluginCapabilitiesResponse.js';
import type { GetPluginInfoResponse } from '../generated/csi/v1/GetPluginInfoResponse.js';
import type { IdentityHandlers } from '../generated/csi/v1/Identity.js';
import type { ProbeResponse } from '../generated/csi/v1/ProbeResponse.js';
import type { RpcFactory } from '../server/rpc.js';

export interface IdentityDeps {
  driverName: string;
  vendorVersion: string;
  /** true when the SDSHypervisor daemon answers; must resolve within a short bound, never throw */
  probe: () => Promise<boolean>;
  /** optional services this process advertises */
  groupControllerService?: boolean;
  snapshotMetadataService?: boolean;
}

export function pluginCapabilities(deps: IdentityDeps): GetPluginCapabilitiesResponse {
  const services = ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS'] as const;
  const capabilities: NonNullable<GetPluginCapabilitiesResponse['capabilities']> = services.map((type) => ({
    service: { type },
  }));
  if (deps.groupControllerService) capabilities.push({ service: { type: 'GROUP_CONTROLLER_SERVICE' } });
  if (deps.snapshotMetadataService) capabilities.push({ service: { type: 'SNAPSHOT_METADATA_SERVICE' } });
  capabilities.push({ volume_expansion: { type: 'ONLINE' } });
  return { capabilities };
}

export function identityService(deps: IdentityDeps, rpc: RpcFactory): IdentityHandlers {
  return {
    GetPluginInfo: rpc.unary('GetPluginInfo', async (): Promise<GetPluginInfoResponse> => ({
      name: deps.driverName,
      vendor_version: deps.vendorVersion,
      manifest: { backend: 'Huawei SDSHypervisor (VBS socket API + sds_cli)' },
    })),
    GetPluginCapabilities: rpc.unary('GetPluginCapabilities', async () => pluginCapabilities(deps)),
    Probe: rpc.unary('Probe', async (): Promise<ProbeResponse> => ({ ready: { value: await deps.probe() } })),
  };
}
