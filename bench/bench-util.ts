/** Helpers shared by the kernel benchmarks (run-bench.ts, int8-bench.ts). */
import type * as ort from 'onnxruntime-node';

/**
 * Multiply-adds per second of an M^3 matrix product session: `wall` from the
 * best wall-clock run; `perCpu` from process CPU time (x threads), which is
 * what the rate would be with the cores to itself (useful on a shared
 * machine). Idle intra-op threads must not spin (the caller's session
 * options), so CPU time counts work only.
 */
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
