/**
 * A backbone for a worker thread (./backbone-worker.ts, ./pipeline-worker.ts):
 * its own onnxruntime session, with the kernel backend's L2 normalisation
 * plugged in as Detector.open does.
 */
import { Backbone } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { getBackend } from '../kernels/index.js';

export async function loadThreadBackbone(options: { model?: string; description?: BackboneDescription; threads?: number; backend?: string }): Promise<Backbone> {
  const backbone = await Backbone.load({ model: options.model, description: options.description, threads: options.threads });
  // Every backend's normalisation is bit-identical to the TypeScript one (test/conformance.test.ts), so this is
  // a matter of speed only: without a named backend, the fast one when it loads, without the registry's fallback
  // warning (the thread's owner chose its own backend and warned already); a named one this thread cannot load
  // (registered on the main thread only) leaves the TypeScript normalisation.
  const backend = await getBackend(options.backend ?? 'fast', { precision: 'float' }).catch(() => undefined);
  if (backend?.l2NormalisePixels !== undefined) backbone.usePixelNormaliser(backend.l2NormalisePixels);
  return backbone;
}
