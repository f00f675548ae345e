/** Helpers shared by the kernel benchmarks (run-bench.ts, int8-bench.ts): same-run peak rates and random unit feature maps. */
import type { BackboneIdentity } from '../src/backbone/description.js';
import type * as ort from 'onnxruntime-node';

/**
 * Multiply-adds per second of an M^3 matrix product session: `wall` from the
 * best wall-clock run; `perCpu` from process CPU time (x threads), which is
 * what the rate would be with the cores to itself (useful on a shared
 * machine). Idle intra-op threads must not spin (the caller's session
 * options), so CPU time counts work only.
 */
/** The default backbone's layer shapes (7 MiB per image in float32), for store benches that need no model. */
export const RESNET50_SHAPES: BackboneIdentity = {
  name: 'resnet50v2-shapes',
  modelSha256: 'ab'.repeat(32),
  inputSize: [256, 256],
  layers: [
    { name: 'layer1', channels: 256, height: 64, width: 64, stride: 4 },
    { name: 'layer2', channels: 512, height: 32, width: 32, stride: 8 },
    { name: 'layer3', channels: 1024, height: 16, width: 16, stride: 16 },
  ],
};

export async function sessionMacsPerSecond(
  session: ort.InferenceSession,
  feeds: ort.InferenceSession.FeedsType,
  m: number,
  threads: number,
  reps: number,
): Promise<{ wall: number; perCpu: number }> {
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  await session.release();
  const cpuSecondsPerRun = (cpu.user + cpu.system) / 1e6 / reps;
  return { wall: m ** 3 / (Math.min(...times) / 1000), perCpu: (m ** 3 * threads) / cpuSecondsPerRun };
}

/** Dot products really computed: K * C * #{(p, d): |d|_inf <= R, p and p + d inside}. */
export function realMacs(k: number, c: number, h: number, w: number, radius: number): number {
  const along = (n: number): number => {
    let pairs = 0;
    for (let d = -radius; d <= radius; d++) pairs += Math.max(0, n - Math.abs(d));
    return pairs;
  };
  return k * c * along(h) * along(w);
}

/**
 * m maps [c, h, w] of pseudo-random values (a fixed LCG, so runs compare),
 * each pixel L2-normalised over channels as the backbone's features are.
 * Values are drawn in [0, 1), or in [-0.5, 0.5) with `centred` (the int8
 * benchmark's inputs, which then use both signs of the quantised range).
 */
export function randomUnitMaps(m: number, c: number, h: number, w: number, seed: number, options: { centred?: boolean } = {}): Float32Array {
  const shift = options.centred ? 0.5 : 0;
  let s = seed >>> 0;
  const data = new Float32Array(m * c * h * w);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 4294967296 - shift;
  }
  const hw = h * w;
  for (let k = 0; k < m; k++) {
    for (let p = 0; p < hw; p++) {
      let sum = 0;
      for (let ch = 0; ch < c; ch++) sum += data[(k * c + ch) * hw + p] ** 2;
      const inv = 1 / Math.sqrt(sum);
      for (let ch = 0; ch < c; ch++) data[(k * c + ch) * hw + p] *= inv;
    }
  }
  return data;
}
