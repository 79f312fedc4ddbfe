// Image import and export jobs (docs/socket-api.md §2.6): requests of the extended level only.
import type { CallOptions, ImageExportSpec, ImageImportSpec, ImageJob, VolumeInfo } from './backend.js';
import { checkName, checkWord, placementFields, positive, qosFields, toMiB } from './fields.js';
import { FieldReader, jobFromRecord, volumeFromRecord } from './records.js';
import type { VbsSession } from './session.js';
import { Key, Requests, RecordPrefix } from '../protocol/catalog.js';
import { RetCode, type Field } from '../protocol/vbs.js';

export class ImageRequests {
  constructor(
    private readonly s: VbsSession,
    private readonly longRequestTimeoutMs: number,
    private readonly mustGetVolume: (name: string, after: string, opts?: CallOptions) => Promise<VolumeInfo>,
  ) {}

  async importImage(spec: ImageImportSpec, opts?: CallOptions): Promise<{ job: ImageJob; volume: VolumeInfo }> {
    const type = Requests.IMPORT_IMAGE.type;
    this.s.extendedOnly(type);
    checkName(Key.VOL_NAME, spec.name);
    const fields: Field[] = [
      [Key.VOL_NAME, spec.name],
      [Key.IMAGE_URL, spec.url],
    ];
    if (spec.format !== undefined)
      fields.push([Key.IMAGE_FORMAT, checkWord(Key.IMAGE_FORMAT, spec.format, ['auto', 'raw', 'qcow2'])]);
    if (spec.checksum !== undefined) {
      if (!/^(sha256|md5):[0-9a-fA-F]+$/.test(spec.checksum))
        throw this.s.error('InvalidParameter', 'checksum: must be sha256:<hex> or md5:<hex>');
      fields.push([Key.CHECKSUM, spec.checksum]);
    }
    if (spec.sizeBytes !== undefined) fields.push([Key.VOL_SIZE, String(toMiB('sizeBytes', spec.sizeBytes))]);
    fields.push(...placementFields(spec), ...qosFields(spec.qos, spec.cachePolicy));
    const reply = await this.s.request(type, fields, opts, this.longRequestTimeoutMs);
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(type, reply);
    const jobId = this.s.parsing(() => FieldReader.ofReply('import reply', reply.fields).name(Key.JOB_ID));
    const volume =
      this.s.firstRecord(reply, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, spec.name)) ??
      (await this.mustGetVolume(spec.name, type, opts));
    return {
      job: { id: jobId, type: 'import', state: 'running', volumeName: spec.name, bytesDone: 0, bytesTotal: 0 },
      volume,
    };
  }

  async exportImage(spec: ImageExportSpec, opts?: CallOptions): Promise<ImageJob> {
    const type = Requests.EXPORT_IMAGE.type;
    this.s.extendedOnly(type);
    if ((spec.volumeName === undefined) === (spec.snapshotName === undefined)) {
      throw this.s.error('InvalidParameter', 'export: exactly one of volumeName and snapshotName is needed');
    }
    const fields: Field[] = [];
    if (spec.volumeName !== undefined) fields.push([Key.VOL_NAME, checkName(Key.VOL_NAME, spec.volumeName)]);
    if (spec.snapshotName !== undefined) fields.push([Key.SNAP_NAME, checkName(Key.SNAP_NAME, spec.snapshotName)]);
    if (!spec.path.startsWith('/')) throw this.s.error('InvalidParameter', 'image_path: must be an absolute path');
    fields.push([Key.IMAGE_PATH, spec.path]);
    if (spec.format !== undefined)
      fields.push([Key.IMAGE_FORMAT, checkWord(Key.IMAGE_FORMAT, spec.format, ['raw', 'qcow2'])]);
    if (spec.overwrite) fields.push([Key.OVERWRITE, '1']);
    const reply = await this.s.request(type, fields, opts, this.longRequestTimeoutMs);
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(type, reply);
    const jobId = this.s.parsing(() => FieldReader.ofReply('export reply', reply.fields).name(Key.JOB_ID));
    const job: ImageJob = { id: jobId, type: 'export', state: 'running', bytesDone: 0, bytesTotal: 0 };
    if (spec.volumeName !== undefined) job.volumeName = spec.volumeName;
    if (spec.snapshotName !== undefined) job.snapshotName = spec.snapshotName;
    return job;
  }

  async getJob(id: string, opts?: CallOptions): Promise<ImageJob | undefined> {
    if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(id))
      throw this.s.error('InvalidParameter', 'job_id: must be 1-128 characters of [A-Za-z0-9_.:-]');
    this.s.extendedOnly(Requests.QUERY_IMAGE_JOB.type);
    const reply = await this.s.request(Requests.QUERY_IMAGE_JOB.type, [[Key.JOB_ID, id]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(Requests.QUERY_IMAGE_JOB.type, reply);
    const job = this.s.firstRecord(reply, RecordPrefix.JOB, jobFromRecord);
    if (job === undefined) throw this.s.error('Protocol', 'QUERY_IMAGE_JOB_REQ: success reply without job0');
    return job;
  }

  async waitJob(
    id: string,
    timeoutMs: number,
    opts?: CallOptions,
    onProgress?: (job: ImageJob) => void,
  ): Promise<ImageJob> {
    const deadline = Date.now() + positive('timeoutMs', timeoutMs);
    return this.s.withCall(opts, async (signal) => {
      // The polls are linked to this wait's own signal (cancelled with it), not again to the caller's.
      const pollOpts: CallOptions = { ...opts, signal };
      let delay = 20;
      for (;;) {
        const job = await this.getJob(id, pollOpts);
        if (job === undefined) throw this.s.error('NotFound', `image job ${id} does not exist`, RetCode.NOT_EXIST);
        if (job.state !== 'running') return job;
        onProgress?.(job);
        if (Date.now() + delay > deadline) {
          throw this.s.error(
            'Timeout',
            `image job ${id} still running after ${timeoutMs} ms (${job.bytesDone}/${job.bytesTotal} bytes)`,
          );
        }
        await this.s.sleep(delay, signal, 'waiting for an image job');
        delay = Math.min(delay * 2, 1_000);
      }
    });
  }
}
