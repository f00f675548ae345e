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
  /**
   * Decoder pixel limit (width*height), checked from the file's header before
   * decoding; default DEFAULT_MAX_PIXELS (64 Mpx). Peak decoding memory is
   * about 3.2 bytes per pixel for 8-bit images and 6.4 for 16-bit ones (README,
   * "Inputs"), so the default bounds one image's decoding near 200 / 400 MiB.
   */
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
/**
 * 64 Mpx (e.g. 8192 x 7812): above any industrial camera hetmm is meant for
 * (50 Mpx sensors), far below what fits a 249 KB PNG (16000 x 16000 decodes
 * to ~1 GB). Raise it with `--max-pixels` / `maxPixels`.
 */
export const DEFAULT_MAX_PIXELS = 64 * 1024 * 1024;
/** Bytes of memory per pixel decoding needs at its peak (measured: README "Inputs"). */
export const DECODE_BYTES_PER_PIXEL = { depth8: 3.2, depth16: 6.4 } as const;
