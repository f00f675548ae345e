/**
 * A backbone for a worker thread (./backbone-worker.ts, ./pipeline-worker.ts):
 * its own onnxruntime session, with the native L2 normalisation plugged in as
 * Detector.open does (the reference when the addon does not load).
 */
import { Backbone, type PixelNormaliser } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { loadFastBackend } from '../kernels/fast/index.js';

export async function loadThreadBackbone(options: { model?: string; description?: BackboneDescription; threads?: number }): Promise<Backbone> {
  const backbone = await Backbone.load({ model: options.model, description: options.description, threads: options.threads });
  const normalise = await loadFastBackend().then(
    (b) => (b as { l2NormalisePixels?: PixelNormaliser }).l2NormalisePixels,
    () => undefined,
  );
  if (normalise !== undefined) backbone.usePixelNormaliser(normalise);
  return backbone;
}
