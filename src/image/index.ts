export type { LoadedImage, LoadImageOptions, RawRgb } from './types.js';
export { DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PIXELS } from './types.js';
export { loadImage, loadMask, loadImagesFrom, decodeRgb, rgbToTensor, IMAGE_EXTENSIONS } from './load.js';
export { encodeMapPng16, encodeMaskPng, renderHeatmapOverlay, saveFloatMap, npyHeader, jetColour } from './encode.js';
export type { OverlayOptions } from './encode.js';
export { resizeBilinearU8, resizeBilinearFloat } from './resample.js';
export { decodeBmp } from './bmp.js';
