// The KV connector: the node side of the data plane (docs/socket-api.md §3.1). The only driver code that runs
// `sds_cli`. Unlike os-brick's connector it never crashes on odd output, waits for the block device to
// exist, and serializes calls per volume.
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { normalize } from 'node:path';
import { childEnv } from '../config/environment.js';
import { checkDevicePath, waitForBlockDevice } from './device-path.js';
import { ConnectorError, type ConnectorErrorKind } from './errors.js';
import {
  CLI_PATH_ENV,
  CONNECTOR_DEFAULTS,
  DEFAULT_CLI_PATH,
  type AttachOptions,
  type CallOptions,
  type ConnectorLogger,
  type ConnectorObserver,
  type KvConnectorOptions,
} from './options.js';
import { KvCode, parseKv, type KvMethod } from '../protocol/kv.js';
import { isValidName } from '../protocol/vbs.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { observed } from '../util/observe.js';

const SUCCESS: Record<KvMethod, ReadonlySet<number>> = {
  attach: new Set([KvCode.OK, KvCode.ALREADY_ATTACHED, KvCode.ATTACH_OF_THIS_NODE_DONE]),
  detach: new Set([KvCode.OK, KvCode.VBS_ABNORMAL, KvCode.NOT_MOUNT_NODE]),
  querydev: new Set([KvCode.OK]),
};

/** querydev of the original level: every code is an answer (non-zero: not attached). */
const ANY_CODE: readonly number[] = [];

interface CliReply {
  code: number;
  fields: Map<string, string>;
  desc: string;
}

interface CliRun {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
}

export class KvConnector {
  private readonly env: NodeJS.ProcessEnv;
  private readonly cliPath: string;
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;
  private readonly deviceWaitMs: number;
  private readonly deviceDir: string;
  private readonly logger: ConnectorLogger | undefined;
  private readonly observer: ConnectorObserver | undefined;
  private readonly locks = new KeyedMutex<string>();
  private readonly originalCli: boolean;
  private readonly volumeExists: KvConnectorOptions['volumeExists'];

  constructor(options: KvConnectorOptions = {}) {
    this.env = options.env ?? childEnv();
    this.cliPath = options.cliPath || this.env[CLI_PATH_ENV] || DEFAULT_CLI_PATH;
    this.timeoutMs = options.timeoutMs ?? CONNECTOR_DEFAULTS.timeoutMs;
    this.maxOutputBytes = options.maxOutputBytes ?? CONNECTOR_DEFAULTS.maxOutputBytes;
    this.deviceWaitMs = options.deviceWaitMs ?? CONNECTOR_DEFAULTS.deviceWaitMs;
    this.deviceDir = normalize(options.deviceDir ?? CONNECTOR_DEFAULTS.deviceDir).replace(/\/+$/, '');
    this.logger = options.logger;
    this.observer = options.observer;
    this.originalCli = options.originalCli ?? false;
    this.volumeExists = options.volumeExists;
  }

  /** The CLI this connector runs. */
  get cli(): string {
    return this.cliPath;
  }

  /** Attaches the volume to this host and returns its block device once the device node is there. */
  async attach(volumeName: string, opts: AttachOptions = {}): Promise<string> {
    checkVolumeName(volumeName);
    return this.locks.withLock(
      volumeName,
      async () => {
        const attached = await this.call('attach', volumeName, opts);
        let device = attached.fields.get('dev_addr');
        if (device === undefined || device === '') {
          // The product's attach prints no device: ask for it, as os-brick did.
          const queried = await this.call('querydev', volumeName, opts);
          device = queried.fields.get('dev_addr');
          if (device === undefined || device === '') {
            throw new ConnectorError(
              'Garbled',
              `sds_cli querydev ${volumeName}: success without dev_addr`,
              queried.code,
            );
          }
        }
        const path = checkDevicePath(this.deviceDir, volumeName, device);
        await waitForBlockDevice(volumeName, path, opts.deviceWaitMs ?? this.deviceWaitMs, opts.signal);
        return path;
      },
      opts.signal,
    );
  }

  /** Detaches the volume from this host; detaching a volume that is not attached succeeds. */
  async detach(volumeName: string, opts: CallOptions = {}): Promise<void> {
    checkVolumeName(volumeName);
    return this.locks.withLock(
      volumeName,
      async () => {
        await this.call('detach', volumeName, opts);
      },
      opts.signal,
    );
  }

  /** The volume's block device on this host, or undefined when it is not attached here. */
  async queryDevice(volumeName: string, opts: CallOptions = {}): Promise<string | undefined> {
    checkVolumeName(volumeName);
    return this.locks.withLock(
      volumeName,
      async () => {
        const reply = await this.call(
          'querydev',
          volumeName,
          opts,
          this.originalCli ? ANY_CODE : [KvCode.NOT_ATTACHED, KvCode.NOT_MOUNT_NODE],
        );
        if (reply.code !== KvCode.OK) {
          // The product's querydev answers the same code for "not attached" and "no such volume".
          await this.failIfMissing('querydev', volumeName, reply.code, opts);
          return undefined;
        }
        const device = reply.fields.get('dev_addr');
        if (device === undefined || device === '') {
          throw new ConnectorError('Garbled', `sds_cli querydev ${volumeName}: success without dev_addr`, reply.code);
        }
        return checkDevicePath(this.deviceDir, volumeName, device);
      },
      opts.signal,
    );
  }

  /** With the product CLI, a failure for a volume the back end does not have is VolumeNotFound, as our CLI says. */
  private async failIfMissing(method: KvMethod, volumeName: string, code: number, opts: CallOptions): Promise<void> {
    if (!this.originalCli || this.volumeExists === undefined) return;
    if (!(await this.volumeExists(volumeName, opts.signal))) {
      throw new ConnectorError(
        'VolumeNotFound',
        `sds_cli ${method} ${volumeName}: ret_code=${code}, and the back end has no such volume`,
        code,
      );
    }
  }

  /** Runs one method; resolves on a success code (or one of `alsoAccept`), throws a typed error otherwise. */
  private async call(
    method: KvMethod,
    volumeName: string,
    opts: CallOptions,
    alsoAccept: readonly number[] = [],
  ): Promise<CliReply> {
    try {
      return await this.observedCall(method, volumeName, opts, alsoAccept);
    } catch (err) {
      if (err instanceof ConnectorError && err.kind === 'Failed' && err.code !== undefined)
        await this.failIfMissing(method, volumeName, err.code, opts);
      throw err;
    }
  }

  private async observedCall(
    method: KvMethod,
    volumeName: string,
    opts: CallOptions,
    alsoAccept: readonly number[],
  ): Promise<CliReply> {
    return observed(
      this.observer,
      method,
      () => this.callOnce(method, volumeName, opts, alsoAccept),
      () => 'ok',
      (err) => (err instanceof ConnectorError ? err.kind : 'Failed'),
    );
  }

  private async callOnce(
    method: KvMethod,
    volumeName: string,
    opts: CallOptions,
    alsoAccept: readonly number[],
  ): Promise<CliReply> {
    const { requestId } = opts;
    const run = await this.run(method, volumeName, opts.signal);
    if (run.stderr.trim() !== '') {
      // The product logs stderr as an error; it is diagnostics next to a reply we judge by ret_code.
      this.logger?.warn(
        { method, volume: volumeName, requestId, stderr: run.stderr.slice(0, 2_000) },
        'sds_cli wrote to stderr',
      );
    }
    const parsed = parseKv(run.stdout);
    const codeText = parsed.fields.get('ret_code');
    const how = `sds_cli ${method} ${volumeName}`;
    if (codeText === undefined || !/^-?\d{1,12}$/.test(codeText)) {
      // The CLI is not looked at before each call (two thread-pool round trips every time): one that cannot
      // run (a file without execute permission: the child exits 127, silent) is told apart here.
      await this.checkCli();
      const problem =
        codeText === undefined ? 'no ret_code' : `ret_code is not a number (${JSON.stringify(codeText.slice(0, 40))})`;
      throw new ConnectorError(
        'Garbled',
        `${how}: ${problem} in its output (${exitText(run)}); output: ${firstLines(run.stdout)}`,
      );
    }
    const code = Number(codeText);
    const desc = (parsed.fields.get('ret_desc') ?? '').replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 300);
    const reply: CliReply = { code, fields: parsed.fields, desc };
    this.logger?.debug({ method, volume: volumeName, requestId, code }, 'sds_cli replied');
    if (SUCCESS[method].has(code) || alsoAccept === ANY_CODE || alsoAccept.includes(code)) return reply;
    const kind = failureKind(method, code);
    // The original CLI prints a bare ret_code=1 for every failure it has no code for: say what it may mean.
    const reason = desc
      ? ` (${desc})`
      : kind === 'Failed' && this.originalCli && method === 'attach'
        ? ' (the CLI gives no reason: the host may not see the pool of the volume, or the back end failed)'
        : '';
    throw new ConnectorError(kind, `${how} failed: ret_code=${code}${reason}`, code);
  }

  private async checkCli(): Promise<void> {
    try {
      const info = await stat(this.cliPath);
      if (!info.isFile()) throw new Error('not a file');
      await access(this.cliPath, fsConstants.X_OK);
    } catch (err) {
      throw new ConnectorError(
        'CliMissing',
        `sds_cli not found or not executable at ${this.cliPath} (set ${CLI_PATH_ENV} or --sds-cli)`,
        undefined,
        { cause: err },
      );
    }
  }

  /**
   * Runs the CLI with an argv array (never a shell), in its own process group so a timeout kills whatever
   * it started too; stdout and stderr are bounded.
   */
  private run(method: KvMethod, volumeName: string, signal: AbortSignal | undefined): Promise<CliRun> {
    const how = `sds_cli ${method} ${volumeName}`;
    return new Promise<CliRun>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new ConnectorError('Timeout', `${how}: cancelled before it ran`, undefined, { cause: signal.reason }));
        return;
      }
      const child = spawn(this.cliPath, ['-c', method, '-v', volumeName], {
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let errBytes = 0;
      let failure: ConnectorError | undefined;
      let settled = false;
      let graceTimer: NodeJS.Timeout | undefined;

      const settle = (result: CliRun | ConnectorError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        signal?.removeEventListener('abort', onAbort);
        if (result instanceof ConnectorError) reject(result);
        else resolve(result);
      };
      const kill = (why: ConnectorError): void => {
        failure ??= why;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
        // A grandchild that left the group could hold the pipes open: do not wait for it for long.
        graceTimer ??= setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          settle(failure!);
        }, 1_000);
      };
      const onAbort = (): void =>
        kill(new ConnectorError('Timeout', `${how}: cancelled`, undefined, { cause: signal?.reason }));
      const timer = setTimeout(
        () => kill(new ConnectorError('Timeout', `${how}: no reply within ${this.timeoutMs} ms; killed`)),
        this.timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });

      child.stdout!.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > this.maxOutputBytes)
          kill(new ConnectorError('Garbled', `${how}: output exceeds ${this.maxOutputBytes} bytes; killed`));
        else out.push(chunk);
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        errBytes += chunk.length;
        if (errBytes <= this.maxOutputBytes) err.push(chunk);
      });
      child.once('error', (e: NodeJS.ErrnoException) => {
        const missing = e.code === 'ENOENT' || e.code === 'EACCES';
        const message = missing
          ? `sds_cli not found or not executable at ${this.cliPath} (set ${CLI_PATH_ENV} or --sds-cli): ${e.code}`
          : `${how}: cannot run ${this.cliPath}: ${e.code ?? e.message}`;
        settle(new ConnectorError(missing ? 'CliMissing' : 'Failed', message, undefined, { cause: e }));
      });
      child.once('close', (exitCode, exitSignal) => {
        if (failure) settle(failure);
        else
          settle({
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(err).toString('utf8'),
            exitCode,
            exitSignal,
          });
      });
    });
  }
}

function checkVolumeName(volumeName: string): void {
  // Also keeps a name from being read as an option by the CLI: names start with a letter or digit.
  if (typeof volumeName !== 'string' || !isValidName(volumeName)) {
    throw new ConnectorError(
      'InvalidArgument',
      `volume name ${JSON.stringify(String(volumeName).slice(0, 100))}: must be 1-96 characters of [A-Za-z0-9_.-] starting with a letter or digit`,
    );
  }
}

function failureKind(method: KvMethod, code: number): ConnectorErrorKind {
  switch (code) {
    case KvCode.NOT_MOUNT_NODE:
      return method === 'attach' ? 'NotMapped' : 'Failed';
    case KvCode.VOLUME_NOT_EXIST:
      return 'VolumeNotFound';
    case KvCode.VBS_UNREACHABLE:
      return 'Unavailable';
    case KvCode.BUSY:
      return 'Busy';
    default:
      return 'Failed';
  }
}

function exitText(run: CliRun): string {
  return run.exitSignal ? `killed by ${run.exitSignal}` : `exit status ${run.exitCode}`;
}

function firstLines(text: string): string {
  if (text.trim() === '') return '(empty)';
  const lines = text
    .split('\n')
    .slice(0, 3)
    .map((l) => l.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 120));
  return JSON.stringify(lines.join(' | '));
}
