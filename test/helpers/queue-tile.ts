/** The small magnetic-tile cluster the queue-mode tests run: images, fast lock and heartbeat settings, the fitted store. */
import path from 'node:path';
import { Detector } from '../../src/detector/detector.js';
import { datasetsDir, defaultModelPath, listImages } from './io-paths.js';

const tileRoot = path.join(datasetsDir, 'magnetic-tile/magnetic_tile');
export const tileGood = listImages(path.join(tileRoot, 'train/good'));
export const tileDefects = listImages(path.join(tileRoot, 'test/crack'));
/** short locks and heartbeats, so that a dead worker's job moves on within seconds */
export const FAST_QUEUE_SETTINGS = { lockDurationMs: 2000, stalledIntervalMs: 1000, heartbeatMs: 500 };
/** the same for `hetmm worker` processes */
export const FAST_WORKER_ENV = { HETMM_QUEUE_LOCK_MS: '2000', HETMM_QUEUE_STALLED_MS: '1000', HETMM_QUEUE_HEARTBEAT_MS: '500' };

/** A float32 store of the first `count` good tiles at `file`. */
export async function fitTileStore(file: string, count = 3): Promise<void> {
  const detector = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
  try {
    await detector.add(tileGood.slice(0, count));
    await detector.store.save(file);
  } finally {
    detector.dispose();
  }
}
