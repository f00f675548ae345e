/**
 * int8 matching kernels against the same run's int8 GEMM peak: onnxruntime's
 * MatMulInteger (uint8 x int8 -> int32, 2048^3; on this CPU its MLAS kernel
 * uses AVX-512 VNNI), the way the float kernels are measured against MatMul.
 * Part of `npm run bench` (the kernel section); `--only int8` runs it alone.
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { onnx } from '../src/backbone/quantize/onnx-graph.js';
import type { FeatureStack, QueryMap } from '../src/kernels/contract.js';
import { loadFastBackend } from '../src/kernels/fast/index.js';
import { randomUnitMaps, realMacs, sessionMacsPerSecond } from './bench-util.js';

export interface IntPeak {
  /** multiply-adds per second, best wall-clock run */
  readonly wall: number;
  /** from process CPU time x threads */
  readonly perCpu: number;
}

function matMulIntegerModel(m: number): Uint8Array {
  const vi = (name: string, elemType: number) =>
    onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType, shape: { dim: [{ dimValue: m }, { dimValue: m }] } } } });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'matmulinteger',
      node: [onnx.NodeProto.create({ opType: 'MatMulInteger', input: ['A', 'B'], output: ['Y'], name: 'mmi' })],
      input: [vi('A', onnx.TensorProto.DataType.UINT8), vi('B', onnx.TensorProto.DataType.INT8)],
      output: [vi('Y', onnx.TensorProto.DataType.INT32)],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

export async function ortMatMulIntegerPeak(threads: number, reps: number): Promise<IntPeak> {
  const m = 2048;
  const session = await ort.InferenceSession.create(matMulIntegerModel(m), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const a = new ort.Tensor('uint8', new Uint8Array(m * m).fill(3), [m, m]);
  const b = new ort.Tensor('int8', new Int8Array(m * m).fill(-2), [m, m]);
  const first = await session.run({ A: a, B: b });
  if ((first['Y']?.data as Int32Array)[0] !== m * -6) throw new Error('onnxruntime MatMulInteger returned a wrong value');
  return sessionMacsPerSecond(session, { A: a, B: b }, m, threads, reps);
}



const CASES = [
  { name: 'layer1', c: 256, h: 64, w: 64, f: 5, b: 3 },
  { name: 'layer2', c: 512, h: 32, w: 32, f: 5, b: 3 },
  { name: 'layer3', c: 1024, h: 16, w: 16, f: 7, b: 3 },
];

export interface Int8KernelRow {
  readonly case: string;
  readonly int8Ms: number;
  readonly int8CpuMs: number;
  readonly float32Ms: number;
  readonly realGmacs: number;
  readonly ofPeak: number;
  readonly ofPeakCpu: number;
}

/** Median of `reps` calls per case, K = 60 random unit templates; quantisation (cached per stack) is warm. */
export async function benchInt8Kernels(reps: number, peak: IntPeak, log: (s: string) => void): Promise<Int8KernelRow[]> {
  const int8 = await loadFastBackend({ precision: 'int8' });
  const float = await loadFastBackend({ precision: 'float' });
  const K = 60;
  const rows: Int8KernelRow[] = [];
  log(`\n## int8 matching vs onnxruntime MatMulInteger (u8 x s8, 2048^3, ${int8.threads} threads)\n`);
  log(`MatMulInteger: ${(peak.wall / 1e9).toFixed(1)} GMAC/s wall-clock (best of 5), ${(peak.perCpu / 1e9).toFixed(1)} from CPU time; load average ${os.loadavg()[0].toFixed(2)}\n`);
  log('| case | int8 ms | float32 ms (same run) | int8 speed-up | real GMAC/s int8 | of MatMulInteger | same, CPU-time basis |');
  log('|---|---:|---:|---:|---:|---:|---:|');
  for (const k of CASES) {
    const query: QueryMap = { shape: [k.c, k.h, k.w], data: randomUnitMaps(1, k.c, k.h, k.w, 1, { centred: true }) };
    const templates: FeatureStack = { dtype: 'float32', shape: [K, k.c, k.h, k.w], data: randomUnitMaps(K, k.c, k.h, k.w, 2, { centred: true }) };
    const options = { forwardPatch: k.f, backwardPatch: k.b };
    const time = async (backend: typeof int8): Promise<{ ms: number; cpuMs: number }> => {
      await backend.matchLayer(query, templates, options);
      const times: number[] = [];
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        await backend.matchLayer(query, templates, options);
        times.push(performance.now() - t0);
      }
      const cpu = process.cpuUsage(cpu0);
      times.sort((a, b) => a - b);
      return { ms: times[times.length >> 1], cpuMs: (cpu.user + cpu.system) / 1000 / reps };
    };
    const i8 = await time(int8);
    const f32 = await time(float);
    const real = realMacs(K, k.c, k.h, k.w, Math.max(k.f, k.b) >> 1);
    const row: Int8KernelRow = {
      case: `${k.name} K${K} C${k.c} ${k.h}x${k.w} f${k.f} b${k.b}`,
      int8Ms: i8.ms,
      int8CpuMs: i8.cpuMs,
      float32Ms: f32.ms,
      realGmacs: real / (i8.ms / 1000) / 1e9,
      ofPeak: real / (i8.ms / 1000) / peak.wall,
      ofPeakCpu: ((real / (i8.cpuMs / 1000)) * int8.threads) / peak.perCpu,
    };
    rows.push(row);
    log(
      `| ${row.case} | ${row.int8Ms.toFixed(1)} | ${row.float32Ms.toFixed(1)} | ${(row.float32Ms / row.int8Ms).toFixed(1)}x | ${row.realGmacs.toFixed(1)} | ` +
        `${(row.ofPeak * 100).toFixed(0)}% | ${(row.ofPeakCpu * 100).toFixed(0)}% |`,
    );
  }
  return rows;
}
