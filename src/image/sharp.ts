/**
 * sharp, imported on first use: importing hetmm must not load libvips
 * (test/api.test.ts checks it).
 */
import type Sharp from 'sharp';

let loading: Promise<typeof Sharp> | undefined;

export function loadSharp(): Promise<typeof Sharp> {
  loading ??= import('sharp').then((m) => m.default);
  return loading;
}
