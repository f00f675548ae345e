export { TemplateStore, isUnknownNormalError } from './template-store.js';
export type { StoreSnapshot, StoreSaveOptions, StoreDescription, StoreAppendItem, StoreAppendResult, StoreNormal, StoreRemoveOptions, StoreRemoveResult } from './template-store.js';
export { STORE_FORMAT_VERSION, STORE_FORMAT_VERSION_WITH_REMOVALS, STORE_MAGIC, STORE_END_MAGIC } from './format.js';
export type { StoreHeader, StoreHeaderLayer } from './format.js';
export { float32ToFloat16Bits, float16BitsToNumber, float16DecodeTable, float32ArrayToFloat16, float16ArrayToFloat32 } from './float16.js';
export type { EmbeddedModel } from './template-store.js';
export type { StoreHeaderModel } from './format.js';
