/**
 * Reader-side refresh for serving processes (the in-process server, queue
 * workers): they learn of other processes' writes to a store file (`hetmm
 * add`, another server) without a lock and without any cost per
 * prediction. fs.watchFile polls the path's stat every STORE_WATCH_INTERVAL_MS
 * on libuv's own timer, off the request path (one stat per store per poll,
 * no read); a change of size, mtime or inode calls `onChange`, which reads
 * only what changed (TemplateStore.refresh: the new complete records, or the
 * whole file when it was replaced by another lineage).
 *
 * "Within 1 s" rests on: one poll interval (250 ms) + the refresh (reading
 * the new records: a few MB per image) + the caller's serialisation behind
 * a write in progress. A torn tail (a writer mid-append) is ignored by the
 * reader, and the writer's final fsync changes the stat again.
 */
import { unwatchFile, watchFile, type Stats } from 'node:fs';

/** How often a watched store file's stat is polled. */
export const STORE_WATCH_INTERVAL_MS = 250;

/**
 * Calls `onChange` after the file at `file` changed (never twice at once: a
 * change during a call calls it once more after it). Returns the function
 * that stops watching. Errors of `onChange` go to `onError`.
 */
export function watchStoreFile(file: string, onChange: () => Promise<void>, onError: (e: unknown) => void, intervalMs = STORE_WATCH_INTERVAL_MS): () => void {
  let running = false;
  let again = false;
  let stopped = false;
  const run = (): void => {
    running = true;
    onChange()
      .catch(onError)
      .finally(() => {
        running = false;
        if (again && !stopped) {
          again = false;
          run();
        }
      });
  };
  const listener = (now: Stats, before: Stats): void => {
    if (stopped || (now.ino === before.ino && now.size === before.size && now.mtimeMs === before.mtimeMs)) return;
    if (running) again = true;
    else run();
  };
  // not persistent: a watch never keeps a process alive
  watchFile(file, { persistent: false, interval: intervalMs }, listener);
  return () => {
    stopped = true;
    unwatchFile(file, listener);
  };
}
