/** A toy backbone identity and name-determined features for store tests that run in several processes. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
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

/**
 * A version 2 int8 store as hetmm wrote them before format version 3: the
 * templates of the embedded store `embeddedStore` saved to `output` without
 * the model, and the model beside it as `<stem>.int8.onnx` + `<stem>.int8.json`
 * (sidecars), named in meta. Returns the sidecar paths.
 */
export async function writeSidecarStore(embeddedStore: string, output: string): Promise<{ model: string; description: string }> {
  const source = await TemplateStore.load(embeddedStore);
  const model = source.model;
  assert.ok(model !== undefined, `${embeddedStore} embeds no model`);
  const stem = output.replace(/\.hetmm$/, '');
  const files = { model: `${stem}.int8.onnx`, description: `${stem}.int8.json` };
  writeFileSync(files.model, model.bytes);
  writeFileSync(files.description, `${JSON.stringify(model.description, null, 2)}\n`);
  const legacy = TemplateStore.create(source.identity, { dtype: source.dtype, meta: { ...source.meta, int8Backbone: path.basename(files.model) } });
  const snapshot = source.snapshot();
  for (let i = 0; i < snapshot.count; i++) {
    legacy.append(
      snapshot.layers.map((l) => {
        const per = l.shape[1] * l.shape[2] * l.shape[3];
        assert.ok(l.data instanceof Float32Array, 'a float32 store');
        return l.data.subarray(i * per, (i + 1) * per);
      }),
      snapshot.files[i]!,
    );
  }
  await legacy.save(output);
  assert.equal(readFileSync(output).readUInt32LE(8), 2, 'written as format version 2');
  return files;
}
