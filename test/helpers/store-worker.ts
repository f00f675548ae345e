/**
 * A child process for the multi-process store tests (no model needed: the
 * features of an image are a pure function of its name).
 *
 *   node store-worker.js append FILE NAME...   one locked append per name, prints "ack NAME" after each
 *   node store-worker.js save-every K FILE NAME...  as append, but every K-th name by a full save (compaction)
 *   node store-worker.js read FILE ROUNDS      loads the store ROUNDS times, checks every template, prints "ok COUNT" per load
 *   node store-worker.js churn FILE NAME...    appends each name (id "id-NAME"), and after every second one removes the one
 *                                              before it: "start add NAME" / "ack add NAME", "start remove NAME" / "ack remove NAME"
 */
import { TemplateStore } from '../../src/store/index.js';
import { checkStoreContents, featuresOf } from './store-fixtures.js';

async function main(argv: string[]): Promise<void> {
  const [mode, ...rest] = argv;
  if (mode === 'append' || mode === 'save-every') {
    const every = mode === 'save-every' ? Number(rest.shift()) : 0;
    const [file, ...names] = rest;
    const store = await TemplateStore.load(file!);
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      process.stdout.write(`start ${name}\n`);
      if (every > 0 && (i + 1) % every === 0) {
        await store.refresh(file);
        store.append(featuresOf(name), name);
        await store.save(file!);
      } else {
        await store.appendToFile(file!, [{ features: featuresOf(name), file: name }]);
      }
      process.stdout.write(`ack ${name}\n`);
    }
    return;
  }
  if (mode === 'churn') {
    const [file, ...names] = rest;
    const store = await TemplateStore.load(file!);
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      process.stdout.write(`start add ${name}\n`);
      await store.appendToFile(file!, [{ features: featuresOf(name), file: name, id: `id-${name}` }]);
      process.stdout.write(`ack add ${name}\n`);
      if (i % 2 === 1) {
        const previous = names[i - 1]!;
        process.stdout.write(`start remove ${previous}\n`);
        await store.removeFromFile(file!, [`id-${previous}`]);
        process.stdout.write(`ack remove ${previous}\n`);
      }
    }
    return;
  }
  if (mode === 'read') {
    const [file, rounds] = rest;
    for (let r = 0; r < Number(rounds); r++) {
      const store = await TemplateStore.load(file!);
      checkStoreContents(store);
      process.stdout.write(`ok ${store.count}\n`);
    }
    return;
  }
  throw new Error(`unknown mode ${String(mode)}`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? `${(e as { code?: string }).code ?? ''} ${e.stack}` : String(e)}\n`);
  process.exitCode = 1;
});
