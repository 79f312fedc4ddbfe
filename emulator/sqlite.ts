// Opening SQLite (better-sqlite3) so that none of its objects is ever garbage collected.
//
// better-sqlite3 12 — the version that runs on Node 20 — wraps its Database and Statement objects in
// node::ObjectWrap. From Node 24.19 an ObjectWrap freed by a garbage collection that runs outside JavaScript
// (an idle GC, off a platform task) trips an assertion in Node and aborts the process: SIGABRT from
// `Statement::~Statement()` → `node::RemoveEnvironmentCleanupHook`. better-sqlite3 13 fixes it but crashes on
// Node 20. So every Database and Statement this process makes is kept until it exits: statements come
// from `prepare()` (or `pragma()`, which prepares one), and both are wrapped here to keep what they make.
// Transactions need nothing: better-sqlite3 caches their statements per database, which is kept.
import Database from 'better-sqlite3';

const neverCollected: object[] = [];

function keep<T extends object>(value: T): T {
  neverCollected.push(value);
  return value;
}

export type SqliteDatabase = Database.Database;

/** A better-sqlite3 database whose statements live as long as the process (see above). */
export function openDatabase(path: string, options?: Database.Options): SqliteDatabase {
  const db = keep(new Database(path, options));
  const prepare = db.prepare.bind(db);
  db.prepare = ((source: string) => keep(prepare(source))) as SqliteDatabase['prepare'];
  // pragma() prepares a statement of its own each call; ours keeps it. Pragmas are run a few times at open.
  db.pragma = ((source: string, opts?: Database.PragmaOptions) => {
    const statement = db.prepare(`PRAGMA ${source}`);
    // A pragma that sets a value may return nothing; better-sqlite3's own pragma() answers [] then.
    if (!statement.reader) {
      statement.run();
      return opts?.simple ? undefined : [];
    }
    return opts?.simple ? statement.pluck().get() : statement.all();
  }) as SqliteDatabase['pragma'];
  return db;
}
