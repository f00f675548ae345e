/** The web page (src/server/web, shipped with the package): its files, read once at start. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { packageRoot } from '../../backbone/index.js';
import { RELAXED } from '../http.js';

interface WebAsset {
  readonly route: string;
  readonly type: string;
  readonly body: Buffer;
}

export async function pageRoutes(app: FastifyInstance): Promise<void> {
  for (const asset of loadWebAssets()) {
    app.get(asset.route, { config: RELAXED, schema: { hide: true } }, async (_request, reply) => {
      void reply.header('content-type', asset.type);
      if (asset.route === '/') {
        void reply.header(
          'content-security-policy',
          "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        );
      }
      return reply.header('cache-control', 'no-cache').send(asset.body);
    });
  }
}

function loadWebAssets(): WebAsset[] {
  const root = packageRoot();
  if (root === undefined) return [];
  const dir = path.join(root, 'src', 'server', 'web');
  const assets: Array<[string, string, string]> = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/app.js', 'app.js', 'text/javascript; charset=utf-8'],
    ['/style.css', 'style.css', 'text/css; charset=utf-8'],
  ];
  return assets.flatMap(([route, name, type]) => {
    try {
      return [{ route, type, body: readFileSync(path.join(dir, name)) }];
    } catch {
      return [];
    }
  });
}
