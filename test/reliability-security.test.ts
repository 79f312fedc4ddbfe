// Security properties that hold by construction, checked so they keep holding:
// - the socket-API token is compared in constant time: SHA-256 digests of equal length through
//   crypto.timingSafeEqual, whatever the lengths of the tokens;
// - every unix socket is created 0600: the CSI socket (controller and all mode), the VBS socket and the
//   KV socket, in the separate-process stack and in the embedded all mode;
// - no shell anywhere: a scan of every TypeScript/JavaScript source under src/, emulator/, bench/ and
//   scripts/ (TypeScript's own parser and type checker) finds no exec/execSync, no `shell` option, no shell
//   program, and an argv array in every execFile/spawn call; the C sds_cli calls no system()/popen()/exec*().
// (Secret redaction in logs and errors is tested by the observability suite; `npm audit` is in
// docs/RELIABILITY.md.)
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { tokenDigest, tokenMatches } from '../emulator/server.js';
import { projectRoot } from '../src/util/paths.js';
import { startAllMode } from './support/all-mode.js';
import { leftovers, startStack } from './support/stack.js';

const root = projectRoot();

describe('the socket-API token', () => {
  const expected = tokenDigest('s3cret-token');

  it('matches only the configured token, whatever the length of what is given, without throwing', () => {
    expect(tokenMatches('s3cret-token', expected)).toBe(true);
    for (const wrong of [
      's3cret-tokeN',
      's3cret-toke',
      's3cret-token ',
      '',
      'x',
      'A'.repeat(10_000),
      '\u00e9',
      undefined,
    ]) {
      expect(tokenMatches(wrong, expected), JSON.stringify(wrong?.slice(0, 20))).toBe(false);
    }
  });

  it('is compared as equal-length digests with crypto.timingSafeEqual, never with == or startsWith', () => {
    // Every token, however long, becomes 32 bytes: timingSafeEqual compares equal lengths and its time does
    // not depend on where the bytes differ.
    for (const t of ['', 'a', 'A'.repeat(4096)]) expect(tokenDigest(t).length).toBe(32);
    const server = readFileSync(join(root, 'emulator', 'server.ts'), 'utf8');
    const body = /export function tokenMatches\([^)]*\): boolean \{([^}]*)\}/.exec(server)?.[1] ?? '';
    expect(body.trim()).toBe('return given !== undefined && timingSafeEqual(tokenDigest(given), expected);');
    expect(server).toMatch(/export const tokenDigest = \(s: string\): Buffer => createHash\('sha256'\)/);
    // The only place the emulator looks at auth_token goes through tokenMatches.
    const uses = server.split('\n').filter((l) => /auth_token/.test(l) && !/^\s*(\/\/|\*)/.test(l));
    expect(
      uses.every((l) => /fields\.get\('auth_token'\)|VbsError\(RetCode\.AUTH_FAILED/.test(l)),
      uses.join('\n'),
    ).toBe(true);
    // No plain comparison of a token value anywhere (a check against undefined is not one).
    expect(server).not.toMatch(/\b(given|token|expected|expectedToken)\s*[!=]==?\s*(?!undefined\b)\w/);
  });
});

describe('unix socket modes', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) {
      await leftovers(d);
      await rm(d, { recursive: true, force: true });
    }
  });

  it('separate processes: the CSI socket, the VBS socket and the KV socket are 0600', async () => {
    const stack = await startStack({ mode: 'node' });
    try {
      for (const path of [stack.csiSocket, stack.vbsSocket, stack.kvSocket]) {
        const st = await lstat(path);
        expect(st.isSocket(), path).toBe(true);
        expect((st.mode & 0o777).toString(8), path).toBe('600');
      }
    } finally {
      await stack.stop();
    }
  });

  it('all mode with the embedded emulator: the same three sockets are 0600', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'csi-sockmodes-'));
    dirs.push(dir);
    const csi = join(dir, 'csi', 'csi.sock');
    const run = await startAllMode(dir, [], csi);
    try {
      for (const path of [csi, run.info.controlSocket, run.info.kvSocket]) {
        const st = await lstat(path);
        expect(st.isSocket(), path).toBe(true);
        expect((st.mode & 0o777).toString(8), path).toBe('600');
      }
    } finally {
      await run.stop();
    }
    expect(await leftovers(dir)).toEqual([]);
  });
});

/** Every TypeScript/JavaScript source the product is made of. */
function productSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (name === 'node_modules' || name === 'generated') continue;
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|mts|mjs|js)$/.test(name) && !name.endsWith('.d.ts') && !name.endsWith('.d.mts')) out.push(path);
    }
  };
  for (const top of ['src', 'emulator', 'bench', 'scripts']) if (existsSync(join(root, top))) walk(join(root, top));
  return out;
}

const SHELLS = /^(\/(usr\/)?bin\/)?(sh|bash|dash|zsh|ksh|csh|tcsh|fish|busybox|env)$/;
const PROCESS_FUNCTIONS = new Set(['exec', 'execSync', 'execFile', 'execFileSync', 'spawn', 'spawnSync', 'fork']);

describe('no shell anywhere', () => {
  const files = productSources();
  const program = ts.createProgram({
    rootNames: files,
    options: {
      allowJs: true,
      checkJs: false,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
      skipLibCheck: true,
      strict: true,
    },
  });
  const checker = program.getTypeChecker();

  /** The child_process functions a file imports, by local name (`import { spawn as s }`, `import * as cp`). */
  function childProcessBindings(sf: ts.SourceFile): { names: Map<string, string>; namespaces: Set<string> } {
    const names = new Map<string, string>();
    const namespaces = new Set<string>();
    for (const stmt of sf.statements) {
      if (!ts.isImportDeclaration(stmt) || !ts.isStringLiteral(stmt.moduleSpecifier)) continue;
      if (!/^(node:)?child_process$/.test(stmt.moduleSpecifier.text)) continue;
      const clause = stmt.importClause;
      if (clause?.name) namespaces.add(clause.name.text);
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) namespaces.add(bindings.name.text);
      if (bindings && ts.isNamedImports(bindings)) {
        for (const el of bindings.elements) names.set(el.name.text, (el.propertyName ?? el.name).text);
      }
    }
    return { names, namespaces };
  }

  const findings: string[] = [];
  const calls: string[] = [];
  const isArrayTyped = (expr: ts.Expression): boolean => {
    if (ts.isArrayLiteralExpression(expr)) return true;
    const type = checker.getTypeAtLocation(expr);
    const arrayish = (t: ts.Type) => checker.isArrayType(t) || checker.isTupleType(t);
    return arrayish(type) || (type.isUnion() && type.types.every(arrayish));
  };
  /** Test files too: they call the scripts' exported helpers. */
  const callers = [
    ...program.getSourceFiles().filter((f) => files.includes(f.fileName)),
    ...readdirSync(join(root, 'test'))
      .filter((n) => n.endsWith('.ts'))
      .map((n) => ts.createSourceFile(n, readFileSync(join(root, 'test', n), 'utf8'), ts.ScriptTarget.ES2022, true)),
  ];
  /**
   * An untyped JavaScript wrapper (`const run = (cmd, args) => execFileSync(cmd, args)`): the argv is the
   * wrapper's parameter, so every call of the wrapper must pass an array there.
   */
  function wrapperCallProblems(argv: ts.Identifier): string[] | undefined {
    const symbol = checker.getSymbolAtLocation(argv);
    const param = symbol?.valueDeclaration;
    if (!param || !ts.isParameter(param)) return undefined;
    const fn = param.parent;
    const index = fn.parameters.indexOf(param);
    let name: string | undefined;
    if (ts.isFunctionDeclaration(fn) && fn.name) name = fn.name.text;
    else if (
      (ts.isArrowFunction(fn) || ts.isFunctionExpression(fn)) &&
      ts.isVariableDeclaration(fn.parent) &&
      ts.isIdentifier(fn.parent.name)
    )
      name = fn.parent.name.text;
    if (name === undefined) return undefined;
    const home = fn.getSourceFile();
    const declaration = ts.isFunctionDeclaration(fn) ? fn : fn.parent.parent.parent;
    const exported =
      ts.canHaveModifiers(declaration) &&
      (ts.getModifiers(declaration) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    const problems: string[] = [];
    let seen = 0;
    for (const sf of exported ? callers : [home]) {
      const visit = (node: ts.Node): void => {
        if (ts.isCallExpression(node)) {
          const callee = node.expression;
          const called = ts.isIdentifier(callee)
            ? callee.text
            : ts.isPropertyAccessExpression(callee)
              ? callee.name.text
              : undefined;
          if (called === name) {
            seen++;
            const arg = node.arguments[index];
            if (
              !arg ||
              !(ts.isArrayLiteralExpression(arg) || (program.getSourceFiles().includes(sf) && isArrayTyped(arg)))
            ) {
              problems.push(
                `${sf.fileName}:${sf.getLineAndCharacterOfPosition(node.getStart()).line + 1}: ${name}() called without an argv array`,
              );
            }
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(sf);
    }
    return seen > 0 ? problems : undefined;
  }
  for (const sf of program.getSourceFiles()) {
    if (!files.includes(sf.fileName)) continue;
    const where = (node: ts.Node) =>
      `${relative(root, sf.fileName)}:${sf.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
    const { names, namespaces } = childProcessBindings(sf);
    if (/\bchild_process\b/.test(sf.text) && names.size === 0 && namespaces.size === 0) {
      if (/require\(['"](node:)?child_process['"]\)/.test(sf.text))
        findings.push(`${relative(root, sf.fileName)}: child_process through require()`);
    }
    const visit = (node: ts.Node): void => {
      if (ts.isPropertyAssignment(node) && node.name.getText(sf) === 'shell')
        findings.push(`${where(node)}: a "shell" option`);
      if (ts.isShorthandPropertyAssignment(node) && node.name.text === 'shell')
        findings.push(`${where(node)}: a "shell" option`);
      if (ts.isCallExpression(node)) {
        let fn: string | undefined;
        const callee = node.expression;
        if (ts.isIdentifier(callee) && names.has(callee.text)) fn = names.get(callee.text);
        if (
          ts.isPropertyAccessExpression(callee) &&
          ts.isIdentifier(callee.expression) &&
          namespaces.has(callee.expression.text)
        )
          fn = callee.name.text;
        if (fn !== undefined && PROCESS_FUNCTIONS.has(fn)) {
          calls.push(`${where(node)} ${fn}`);
          if (fn === 'exec' || fn === 'execSync') findings.push(`${where(node)}: ${fn}() runs a shell`);
          const [command, argv] = node.arguments;
          if (command && ts.isStringLiteralLike(command) && SHELLS.test(command.text))
            findings.push(`${where(node)}: runs the shell ${command.text}`);
          if (fn !== 'fork') {
            if (argv === undefined) findings.push(`${where(node)}: ${fn}() without an argv array`);
            else if (!isArrayTyped(argv)) {
              const viaWrapper = ts.isIdentifier(argv) ? wrapperCallProblems(argv) : undefined;
              if (viaWrapper === undefined)
                findings.push(
                  `${where(node)}: ${fn}() without an argv array (${checker.typeToString(checker.getTypeAtLocation(argv))})`,
                );
              else findings.push(...viaWrapper);
            }
            if (argv && ts.isArrayLiteralExpression(argv)) {
              const first = argv.elements[0];
              if (
                first &&
                ts.isStringLiteralLike(first) &&
                first.text === '-c' &&
                command &&
                ts.isStringLiteralLike(command) &&
                SHELLS.test(command.text)
              ) {
                findings.push(`${where(node)}: a shell command line`);
              }
            }
          }
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }

  it('finds the process calls it is meant to check (the scan is not vacuous)', () => {
    // mount tools, the connector's sds_cli, the emulator's tools and its image converter, the embedded emulator
    for (const file of [
      'src/mount/exec.ts',
      'src/connector/kv-connector.ts',
      'emulator/exec.ts',
      'emulator/image-tools.ts',
      'src/server/embedded-emulator.ts',
    ]) {
      expect(
        calls.some((c) => c.startsWith(file)),
        file,
      ).toBe(true);
    }
  });

  it('no exec/execSync, no shell option, no shell program; every execFile/spawn takes an argv array', () => {
    expect(findings).toEqual([]);
  });

  it('the C sds_cli starts no process and no shell', () => {
    const c = readFileSync(join(root, 'emulator', 'cli', 'sds_cli.c'), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '');
    expect(c).not.toMatch(
      /\b(system|popen|execl|execlp|execle|execv|execvp|execvpe|posix_spawn|posix_spawnp|fork|vfork)\s*\(/,
    );
  });
});
