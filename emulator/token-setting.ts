// The socket-API token: from --token-file, else SDS_VBS_TOKEN; either way printable ASCII.
import { ConfigError } from './config-parse.js';

/** The token, or undefined when none is configured; `env` and `readFile` are the caller's. */
export function readToken(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
  readFile: (p: string) => string,
): string | undefined {
  let token: string | undefined;
  if (file) {
    try {
      token = readFile(file).trim();
    } catch (err) {
      throw new ConfigError(
        `setting --token-file (SDS_VBS_TOKEN_FILE): cannot read ${file}: ${(err as Error).message}`,
      );
    }
    if (!token) throw new ConfigError(`setting --token-file (SDS_VBS_TOKEN_FILE): ${file} is empty`);
  } else if (env.SDS_VBS_TOKEN) {
    token = env.SDS_VBS_TOKEN.trim();
  }
  if (token !== undefined && !/^[\x21-\x7e]{1,1024}$/.test(token)) {
    throw new ConfigError(
      'setting --token-file (SDS_VBS_TOKEN): the token must be 1-1024 printable ASCII characters without spaces',
    );
  }
  return token;
}
