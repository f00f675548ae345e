export type { LoadedImage, LoadImageOptions, RawRgb } from './types.js';
export { DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PIXELS, DECODE_BYTES_PER_PIXEL } from './types.js';
export { ACCEPTED_FORMATS, sniffImageFormat, type ImageFormat } from './format.js';
export { loadImage, loadMask, loadImagesFrom, decodeRgb, rgbToTensor, IMAGE_EXTENSIONS } from './load.js';
export { encodeFloatMap, encodeMapPng16, encodeMaskPng, renderHeatmapOverlay, saveFloatMap, npyHeader, jetColour } from './encode.js';
export type { OverlayOptions } from './encode.js';
export { resizeBilinearU8, resizeBilinearFloat } from './resample.js';
export { decodeBmp } from './bmp.js';
