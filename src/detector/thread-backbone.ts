/**
 * A backbone for a worker thread (./backbone-worker.ts, ./pipeline-worker.ts):
 * its own onnxruntime session, with the native L2 normalisation plugged in as
 * Detector.open does (the reference when the addon does not load).
 */
import type { Backbone, PixelNormaliser } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { isHetmmError, type HetmmErrorCode } from '../errors.js';
import { loadFastBackend } from '../kernels/fast/index.js';
import { loadBackbone } from './store-backbone.js';

export async function loadThreadBackbone(options: { model?: string; modelBytes?: Uint8Array; description?: BackboneDescription; threads?: number }): Promise<Backbone> {
  const backbone = await loadBackbone({
    model: options.model,
    ...(options.modelBytes === undefined ? {} : { modelBytes: options.modelBytes }),
    description: options.description,
    threads: options.threads,
  });
  const normalise = await loadFastBackend().then(
    (b) => (b as { l2NormalisePixels?: PixelNormaliser }).l2NormalisePixels,
    () => undefined,
  );
  if (normalise !== undefined) backbone.usePixelNormaliser(normalise);
  return backbone;
}

/** A worker thread's reply for a request that failed: the error's code and message (rebuilt as a HetmmError by the caller). */
export function failureReply(id: number, e: unknown): { id: number; ok: false; code: HetmmErrorCode; message: string } {
  return { id, ok: false, code: isHetmmError(e) ? e.code : 'E_INTERNAL', message: e instanceof Error ? e.message : String(e) };
}
