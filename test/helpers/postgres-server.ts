/**
 * A real PostgreSQL server for one test file, like redis-server.ts: Debian's
 * postgresql binaries, its own loopback port and temp directory (initdb'd
 * fresh, trust auth on loopback only, fsync and synchronous_commit on as in
 * production), stopped and removed afterwards. Never a shared instance.
 *
 * PostgreSQL refuses to run as root: as root (CI) the server and initdb run
 * as the `postgres` user the Debian package creates (spawn's uid/gid, so
 * kill -9 reaches the server itself, not a wrapper).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './redis-server.js';

function postgresBinDir(): string | undefined {
  if (process.env.POSTGRES_BIN !== undefined) return process.env.POSTGRES_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a));
  return versions.length === 0 ? undefined : path.join(root, versions[0]!, 'bin');
}

export const POSTGRES_BIN = postgresBinDir();
export const postgresAvailable = POSTGRES_BIN !== undefined;

/** uid/gid to run the server as: the postgres user when we are root, else ourselves. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export class TestPostgres {
  readonly dir: string;
  readonly dataDir: string;
  readonly #user = runAs();
  #child?: ChildProcess;

  private constructor(readonly port: number) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-pg-'));
    this.dataDir = path.join(this.dir, 'data');
    process.once('exit', () => rmSync(this.dir, { recursive: true, force: true }));
  }

  static async start(): Promise<TestPostgres> {
    if (POSTGRES_BIN === undefined) throw new Error('PostgreSQL binaries not found (apt-get install postgresql, or POSTGRES_BIN)');
    const server = new TestPostgres(await freePort());
    server.#init();
    await server.restart();
    return server;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  #init(): void {
    mkdirSync(this.dataDir, { mode: 0o700 });
    if (this.#user !== undefined) {
      chmodSync(this.dir, 0o755);
      chownSync(this.dataDir, this.#user.uid, this.#user.gid);
    }
    execFileSync(path.join(POSTGRES_BIN!, 'initdb'), ['-D', this.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      cwd: this.dir,
      ...(this.#user ?? {}),
    });
  }

  /** Starts (again) on the same port and data directory: WAL recovery brings back every committed row. */
  async restart(): Promise<void> {
    const child = spawn(
      path.join(POSTGRES_BIN!, 'postgres'),
      ['-D', this.dataDir, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${this.dataDir}`,
        '-c', 'shared_buffers=16MB', '-c', 'max_connections=30', '-c', 'fsync=on', '-c', 'synchronous_commit=on', '-c', 'logging_collector=off'],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: this.dir, ...(this.#user ?? {}) },
    );
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    this.#child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}: ${stderr}`);
      if (await this.#ready()) return;
      if (Date.now() > deadline) throw new Error(`postgres did not start within 30 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async #ready(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** A fresh database on this server (one per test, so tests do not see each other's rows). */
  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
    } finally {
      await client.end();
    }
    return `postgres://postgres@127.0.0.1:${this.port}/${encodeURIComponent(name)}`;
  }

  /** kill -9 of the postmaster: only what reached its WAL survives (its children exit on their own). */
  async kill(): Promise<void> {
    await this.#signal('SIGKILL');
  }

  /** Fast shutdown (SIGINT: abort sessions, checkpoint, exit). */
  async stop(): Promise<void> {
    await this.#signal('SIGINT');
  }

  async #signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }
}
