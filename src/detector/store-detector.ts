/**
 * A detector for a loaded store file as the servers open one (in-process
 * lines, queue workers): a store fitted int8 end to end always runs its own
 * int8 backbone (embedded, or an older store's beside the file), whatever
 * the server's `model` (that one is the float backbone of float stores and
 * of lines created over HTTP); `precision: 'float'` refuses such a store (E_STORE_MISMATCH). The
 * store is read once (stores can be gigabytes), unlike Detector.open's peek.
 */
import { Backbone } from '../backbone/backbone.js';
import { TemplateStore, type EmbeddedModel } from '../store/index.js';
import { Detector, type DetectorOptions } from './detector.js';
import { defaultInt8Matching, embeddedModelName, storeBackboneFiles } from './store-backbone.js';

export async function openStoreDetector(file: string, options: Omit<DetectorOptions, 'store'>, loaded?: TemplateStore): Promise<Detector> {
  if (options.precision === 'float') return Detector.open({ ...options, store: file });
  const store = loaded ?? (await TemplateStore.load(file));
  const int8 = storeBackboneFiles(file, store.meta);
  if (int8 === undefined) return Detector.open({ ...options, store });
  // the server's `model` (its float backbone) is not this store's
  const { precision, model: _serverModel, ...rest } = options;
  // matching as Detector.open follows an int8 store: told, else int8 where the CPU has it
  const matchPrecision = rest.matchPrecision ?? precision ?? (await defaultInt8Matching(rest.backend));
  // an embedded model comes from the loaded store itself (Detector.open), not from the file again
  return Detector.open({ ...rest, ...(int8.embedded ? {} : { model: int8.model }), store, ...(matchPrecision === undefined ? {} : { matchPrecision }) });
}

/**
 * A detector for a new, empty store that will embed `model` (an int8
 * backbone just quantised into memory: fitStore, lines created over HTTP),
 * matching as Detector.open follows an int8 store (int8 where the backend
 * has it, unless options.matchPrecision says). `options.model` (the float
 * model it was quantised from) and `options.precision` are not used.
 */
export async function openNewInt8Detector(options: Omit<DetectorOptions, 'store'>, model: EmbeddedModel): Promise<Detector> {
  const { precision: _whole, model: _float, ...rest } = options;
  const matchPrecision = rest.matchPrecision ?? (await defaultInt8Matching(rest.backend));
  // the same name as Detector.open gives a store's model in memory: the one session is shared
  const backbone = await Backbone.load({
    model: embeddedModelName(undefined, model),
    modelBytes: model.bytes,
    description: model.description,
    ...(rest.threads === undefined ? {} : { threads: rest.threads }),
  });
  try {
    const store = TemplateStore.create(backbone.identity, { ...(rest.dtype === undefined ? {} : { dtype: rest.dtype }), model });
    return await Detector.open({ ...rest, store, ...(matchPrecision === undefined ? {} : { matchPrecision }) });
  } finally {
    await backbone.dispose();
  }
}
