/**
 * Recent predictions, kept in memory with the uploaded image so that an
 * operator can say "this one was good" (hot update by prediction id) and the
 * page can fetch the maps by URL. Bounded by count and by bytes: the oldest
 * go first.
 */
import { randomBytes } from 'node:crypto';
import { ServerError } from './errors.js';
import type { ImageUpload, PredictOutcome } from './executor.js';

export interface KeptResult {
  readonly id: string;
  readonly line: string;
  readonly image: ImageUpload;
  readonly outcome: PredictOutcome;
  readonly at: string;
}

export function newPredictionId(): string {
  return randomBytes(9).toString('base64url');
}

export class ResultCache {
  readonly #entries = new Map<string, KeptResult>();
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  #bytes = 0;

  constructor(maxEntries = 256, maxBytes = 64 * 2 ** 20) {
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  add(result: KeptResult): void {
    const size = sizeOf(result);
    if (size > this.#maxBytes) return;
    this.#entries.set(result.id, result);
    this.#bytes += size;
    for (const [id, old] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(id);
      this.#bytes -= sizeOf(old);
    }
  }

  get(id: string): KeptResult | undefined {
    return this.#entries.get(id);
  }

  /** The kept prediction `id`; E_NOT_FOUND when it is not (or no longer) kept. */
  kept(id: string): KeptResult {
    const r = this.#entries.get(id);
    if (r === undefined) {
      throw new ServerError(
        'E_NOT_FOUND',
        `no recent prediction ${JSON.stringify(id.slice(0, 40))}: the server keeps its last ${this.#maxEntries} predictions in memory only, so they do not survive a restart`,
      );
    }
    return r;
  }
}

function sizeOf(r: KeptResult): number {
  const m = r.outcome.maps;
  return r.image.bytes.length + (m.heatmapPng?.length ?? 0) + (m.maskPng?.length ?? 0) + (m.anomalyNpy?.length ?? 0) + 512;
}
