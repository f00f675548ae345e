/** A toy backbone identity and name-determined features for store tests that run in several processes. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { BackboneIdentity } from '../../src/backbone/description.js';
import { TemplateStore } from '../../src/store/index.js';

/** Big enough layers (~330 KiB per image) that an append takes measurable time and a kill can land inside it. */
export const workerIdentity: BackboneIdentity = {
  name: 'toy-mp',
  modelSha256: 'cd'.repeat(32),
  inputSize: [64, 64],
  layers: [
    { name: 'l1', channels: 64, height: 32, width: 32, stride: 2 },
    { name: 'l2', channels: 64, height: 16, width: 16, stride: 4 },
  ],
};

/** The features of image `name`: a pure function of the name (so any process can check any template). */
export function featuresOf(name: string, identity: BackboneIdentity = workerIdentity): Float32Array[] {
  let s = createHash('sha256').update(name).digest().readUInt32LE(0) | 1;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  return identity.layers.map((l) => {
    const a = new Float32Array(l.channels * l.height * l.width);
    for (let i = 0; i < a.length; i += 97) a[i] = next();
    a[a.length - 1] = next();
    return a;
  });
}

/** Every template's features equal featuresOf(its file name): nothing torn, shifted or mixed up. */
export function checkStoreContents(store: TemplateStore): void {
  const files = store.files;
  assert.equal(files.length, store.count);
  for (let l = 0; l < store.layerCount; l++) {
    const stack = store.layer(l);
    const per = stack.shape[1] * stack.shape[2] * stack.shape[3];
    files.forEach((name, k) => {
      const expected = featuresOf(name, store.identity)[l]!;
      const got = stack.data.subarray(k * per, (k + 1) * per);
      for (let i = 0; i < per; i += 97) {
        if (got[i] !== expected[i]) assert.fail(`template ${k} (${name}) layer ${l} element ${i}: ${got[i]} != ${expected[i]}`);
      }
      if (got[per - 1] !== expected[per - 1]) assert.fail(`template ${k} (${name}) layer ${l}: last element differs`);
    });
  }
}

export async function createWorkerStore(file: string, names: readonly string[] = []): Promise<TemplateStore> {
  const store = TemplateStore.create(workerIdentity);
  for (const n of names) store.append(featuresOf(n), n);
  await store.save(file);
  return store;
}
