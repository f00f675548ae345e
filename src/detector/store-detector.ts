/**
 * A detector for a loaded store file as the servers open one (in-process
 * lines, queue workers): a store fitted int8 end to end always runs its own
 * int8 backbone from beside the file, whatever the server's `model` (that
 * one is the float backbone of float stores and of lines created over
 * HTTP); `precision: 'float'` refuses such a store (E_STORE_MISMATCH). The
 * store is read once (stores can be gigabytes), unlike Detector.open's peek.
 */
import { TemplateStore } from '../store/index.js';
import { Detector, type DetectorOptions } from './detector.js';
import { defaultInt8Matching, storeBackboneFiles } from './store-backbone.js';

export async function openStoreDetector(file: string, options: Omit<DetectorOptions, 'store'>, loaded?: TemplateStore): Promise<Detector> {
  if (options.precision === 'float') return Detector.open({ ...options, store: file });
  const store = loaded ?? (await TemplateStore.load(file));
  const int8 = storeBackboneFiles(file, store.meta);
  if (int8 === undefined) return Detector.open({ ...options, store });
  const { precision, ...rest } = options;
  // matching as Detector.open follows an int8 store: told, else int8 where the CPU has it
  const matchPrecision = rest.matchPrecision ?? precision ?? (await defaultInt8Matching(rest.backend));
  return Detector.open({ ...rest, model: int8.model, store, ...(matchPrecision === undefined ? {} : { matchPrecision }) });
}
