/**
 * A loopback model host for the download tests: serves the model file from
 * ../shared/models as HOST/FILE, or a corrupted copy, or a transfer cut off
 * half-way; counts requests. Binds 127.0.0.1 only.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { defaultModelPath } from './io-paths.js';

export type HostMode = 'ok' | 'corrupt' | 'truncate';

export interface ModelHost {
  readonly url: string;
  mode: HostMode;
  /** requests for the model file so far */
  requests: number;
  close(): Promise<void>;
}

let modelBytes: Buffer | undefined;

export async function startModelHost(mode: HostMode = 'ok'): Promise<ModelHost> {
  modelBytes ??= readFileSync(defaultModelPath);
  const bytes = modelBytes;
  const name = `/${path.basename(defaultModelPath)}`;
  const server = http.createServer((req, res) => {
    if (req.url !== name) {
      res.writeHead(404).end();
      return;
    }
    host.requests++;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
    if (host.mode === 'ok') res.end(bytes);
    else if (host.mode === 'corrupt') {
      const copy = Buffer.from(bytes);
      copy[copy.length >> 1] ^= 0xff;
      res.end(copy);
    } else {
      res.write(bytes.subarray(0, bytes.length >> 1), () => res.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host: ModelHost = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    mode,
    requests: 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  return host;
}

/** A URL where nothing listens (a port that was just free). */
export async function deadHostUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
