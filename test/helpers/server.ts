/** Shared by the server tests: the bottle images, a fitted store, servers on real loopback ports. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Detector } from '../../src/detector/detector.js';
import { calibrateStore } from '../../src/detector/calibrate.js';
import { createServer, type ServerOptions } from '../../src/server/index.js';
import { datasetsDir, defaultModelPath, listImages, repoRoot } from './io-paths.js';

export const bottleRoot = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
export const bottleTrain = listImages(path.join(bottleRoot, 'train/good'));
export const bottleGood = listImages(path.join(bottleRoot, 'test/good'));
export const bottleBroken = listImages(path.join(bottleRoot, 'test/broken_large'));
export const readImage = (file: string): Buffer => readFileSync(file);
/** A Buffer as a fetch/Blob body (the DOM types want an ArrayBuffer-backed view). */
export const body = (bytes: Buffer): Uint8Array<ArrayBuffer> => new Uint8Array(bytes);

export const TEST_TOKEN = 'test-token-0123456789abcdef';
export const auth = { authorization: `Bearer ${TEST_TOKEN}` };

/** Fits a calibrated bottle store from the first `count` training images and saves it. */
export async function fitBottleStore(file: string, count = bottleTrain.length): Promise<void> {
  const detector = await Detector.open({ model: defaultModelPath, preset: 'bottle' });
  try {
    await detector.add(bottleTrain.slice(0, count));
    detector.store.meta.preset = detector.preset;
    if (count >= 2) await calibrateStore(detector, { samples: 16 });
    await detector.store.save(file);
  } finally {
    detector.dispose();
  }
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly base: string;
  close(): Promise<void>;
}

/**
 * createServer on an ephemeral loopback port. The event-loop-delay guard is
 * off unless asked for: on a shared, overloaded CI machine it would turn
 * the other tests' answers into 503s.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const app = await createServer({ model: defaultModelPath, maxEventLoopDelay: 0, ...options });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return { app, base: `http://127.0.0.1:${address.port}`, close: () => app.close() };
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly base: string;
  stderr(): string;
}

/** Runs `hetmm serve ARGS --port 0` as its own process; resolves once it prints its address. */
export async function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'serve', '--port', '0', '--model', defaultModelPath, '--log-level', 'warn', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hetmm serve did not start in 60 s:\n${err}`)), 60_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const m = /hetmm serve: (http:\/\/[^/\s]+)\//.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hetmm serve exited with ${code}:\n${err}`));
    });
  });
  return { child, base, stderr: () => err };
}

export async function postImage(base: string, line: string, bytes: Buffer, query = '', headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/v1/lines/${line}/predict${query}`, { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: body(bytes) });
}

export async function addNormal(base: string, line: string, bytes: Buffer, name: string, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(`${base}/v1/lines/${line}/normals?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { 'content-type': 'image/png', ...headers },
    body: body(bytes),
  });
}

export interface ErrorJson {
  error: { code: string; message: string };
}
