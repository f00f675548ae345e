/** A decoded, resized image ready for the backbone. */
export interface LoadedImage {
  /** [3, height, width] RGB in [0, 1], CHW, row-major. */
  readonly data: Float32Array;
  readonly height: number;
  readonly width: number;
  /** Size of the decoded file before resizing (after EXIF orientation when `autoOrient`). */
  readonly originalHeight: number;
  readonly originalWidth: number;
  /** The file path as given, or '<buffer>' for an in-memory source. */
  readonly source: string;
}

export interface LoadImageOptions {
  /** Output [height, width]; default [256, 256] (HETMM's input size). Aspect ratio is NOT kept. */
  readonly size?: readonly [number, number];
  /** Decoder pixel limit (width*height); default 268402689 (sharp's default, 16383^2). */
  readonly maxPixels?: number;
  /**
   * Apply the EXIF orientation tag. Default false: PIL's Image.open (used by
   * the Python HETMM code and torchvision) ignores it, and the features must
   * match what the reference pipeline sees.
   */
  readonly autoOrient?: boolean;
}

/** Decoded pixels at full resolution, interleaved (HWC), 3 channels RGB. */
export interface RawRgb {
  readonly width: number;
  readonly height: number;
  /** 8-bit samples (Uint8Array) or 16-bit samples (Uint16Array), HWC, 3 channels. */
  readonly data: Uint8Array | Uint16Array;
}

export const DEFAULT_IMAGE_SIZE: readonly [number, number] = [256, 256];
/** sharp's own default limitInputPixels (0x3FFF * 0x3FFF). */
export const DEFAULT_MAX_PIXELS = 0x3fff * 0x3fff;
