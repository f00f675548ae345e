/**
 * Kernel benchmark (`npm run bench`; not part of `npm test`).
 *
 * For each kernel and shape, prints:
 *   - effective multiply-adds/s, counting K*H*W*C*(f^2 + b^2) as the "Fast
 *     kernels" issue defines it (forward and backward counted separately),
 *   - real multiply-adds/s: the dot products the fast kernel actually
 *     computes (each (pixel, offset) pair with |d| <= max(f, b) >> 1 inside
 *     the map, once, shared by both directions),
 *   - the ratio of the effective rate to onnxruntime-node's own float32
 *     MatMul throughput measured in the same run (a 2048x2048x2048 MatMul
 *     model encoded by hand below: the machine's practical peak),
 *   - the speed-up over the TypeScript reference backend on the same inputs.
 *
 * Options: --reps N (fast-kernel repetitions, median reported, default 5),
 *          --reference-templates K (run the reference on the first K
 *          templates and scale its time by 60/K; default: all 60),
 *          --only NAME (substring filter on the case name),
 *          --variant avx512|avx2|generic (force a native variant), --json.
 *
 * Then the end-to-end Detector.predict benchmark (./e2e-bench.ts): stores of
 * real images, per-stage latency, pipelined throughput, memory. Options:
 *          --skip-kernels, --skip-e2e, --e2e-images N (default 24),
 *          --templates 60,209, --dtypes float32,float16,
 *          --concurrency 1,2,3 (predictMany concurrencies),
 *          --threads ORTxNATIVE (setting for every store, default 2x2),
 *          --thread-study 2x2,1x1,2x1,1x2 (settings tried on the first store;
 *          "none" to skip), --no-int8 (skip the int8-matching rows),
 *          --no-int8-backbone (skip the quantised-backbone rows).
 */
import os from 'node:os';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { FeatureStack, QueryMap } from '../src/kernels/contract.js';
import { NATIVE_VARIANTS, loadFastBackend, type FastBackend, type NativeVariant } from '../src/kernels/fast/index.js';
import { pixelGramReference } from '../src/kernels/reference/gram.js';
import { referenceBackend } from '../src/kernels/reference/index.js';
import type { FeatureDType } from '../src/kernels/contract.js';
import { loadBinding } from '../src/kernels/fast/binding.js';
import { runEndToEnd, type EndToEndReport } from './e2e-bench.js';
import { randomUnitMaps, realMacs, sessionMacsPerSecond } from './bench-util.js';
import { benchInt8Kernels, ortMatMulIntegerPeak, type Int8KernelRow } from './int8-bench.js';

interface Args {
  variant: NativeVariant | undefined;
  reps: number;
  referenceTemplates: number;
  only: string;
  json: boolean;
  skipKernels: boolean;
  skipE2e: boolean;
  e2eImages: number;
  templates: number[];
  dtypes: FeatureDType[];
  concurrencies: number[];
  threads: [number, number];
  threadStudy: Array<[number, number]>;
  int8: boolean;
  int8Backbone: boolean;
}

function positiveInts(text: string, what: string): number[] {
  const values = text.split(',').map((v) => Number(v.trim()));
  if (values.length === 0 || !values.every((v) => Number.isInteger(v) && v > 0)) {
    throw new Error(`${what} must be a comma-separated list of positive integers, got ${text}`);
  }
  return values;
}

function threadPair(text: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(text.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new Error(`thread settings are ORTxNATIVE, e.g. 2x2, got ${text}`);
  return [Number(m[1]), Number(m[2])];
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    variant: undefined,
    reps: 5,
    referenceTemplates: 60,
    only: '',
    json: false,
    skipKernels: false,
    skipE2e: false,
    e2eImages: 24,
    templates: [60, 209],
    dtypes: ['float32', 'float16'],
    concurrencies: [1, 2, 3],
    threads: [2, 2],
    threadStudy: [[2, 2], [1, 1], [2, 1], [1, 2]],
    int8: true,
    int8Backbone: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`missing value after ${a}`);
      return v;
    };
    if (a === '--reps') args.reps = Number(value());
    else if (a === '--reference-templates') args.referenceTemplates = Number(value());
    else if (a === '--only') args.only = value();
    else if (a === '--json') args.json = true;
    else if (a === '--skip-kernels') args.skipKernels = true;
    else if (a === '--skip-e2e') args.skipE2e = true;
    else if (a === '--no-int8') args.int8 = false;
    else if (a === '--no-int8-backbone') args.int8Backbone = false;
    else if (a === '--e2e-images') args.e2eImages = positiveInts(value(), '--e2e-images')[0]!;
    else if (a === '--templates') args.templates = positiveInts(value(), '--templates');
    else if (a === '--concurrency') args.concurrencies = positiveInts(value(), '--concurrency');
    else if (a === '--threads') args.threads = threadPair(value());
    else if (a === '--thread-study') {
      const v = value();
      args.threadStudy = v === 'none' ? [] : v.split(',').map(threadPair);
    } else if (a === '--dtypes') {
      const v = value().split(',');
      if (!v.every((d) => d === 'float32' || d === 'float16')) throw new Error(`--dtypes must list float32 and/or float16, got ${v.join(',')}`);
      args.dtypes = v as FeatureDType[];
    }
    else if (a === '--variant') {
      const v = value();
      if (!(NATIVE_VARIANTS as readonly string[]).includes(v)) throw new Error(`--variant must be one of ${NATIVE_VARIANTS.join(', ')}, got ${v}`);
      args.variant = v as NativeVariant;
    }
    else throw new Error(`unknown option ${a} (expected --reps N, --reference-templates K, --only NAME, --variant V, --json, --skip-kernels, --skip-e2e, --e2e-images N, --templates K,K, --dtypes D,D, --concurrency C,C, --threads OxN, --thread-study OxN,..., --no-int8, --no-int8-backbone)`);
  }
  if (!Number.isInteger(args.reps) || args.reps < 1) throw new Error(`--reps must be a positive integer, got ${args.reps}`);
  if (!Number.isInteger(args.referenceTemplates) || args.referenceTemplates < 1 || args.referenceTemplates > 60) {
    throw new Error(`--reference-templates must be an integer in 1..60, got ${args.referenceTemplates}`);
  }
  return args;
}

// ---- machine ------------------------------------------------------------------

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

// ---- onnxruntime MatMul peak -----------------------------------------------------
// A minimal ONNX ModelProto, protobuf-encoded by hand: one MatMul node
// Y = A x B with A, B float32 [M, M]. Field numbers from onnx.proto.

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
const fieldKey = (field: number, wire: number): number[] => varint((field << 3) | wire);
const intField = (field: number, n: number): number[] => [...fieldKey(field, 0), ...varint(n)];
const bytesField = (field: number, b: number[]): number[] => [...fieldKey(field, 2), ...varint(b.length), ...b];
const stringField = (field: number, s: string): number[] => bytesField(field, [...Buffer.from(s, 'utf8')]);

function valueInfo(name: string, dims: number[]): number[] {
  const shape = dims.flatMap((d) => bytesField(1, intField(1, d))); // TensorShapeProto.dim{dim_value}
  const tensorType = [...intField(1, 1 /* FLOAT */), ...bytesField(2, shape)]; // TypeProto.Tensor
  return [...stringField(1, name), ...bytesField(2, bytesField(1, tensorType))]; // ValueInfoProto
}

function matMulModel(m: number): Uint8Array {
  const node = [...stringField(1, 'A'), ...stringField(1, 'B'), ...stringField(2, 'Y'), ...stringField(4, 'MatMul')];
  const graph = [
    ...bytesField(1, node),
    ...stringField(2, 'matmul'),
    ...bytesField(11, valueInfo('A', [m, m])),
    ...bytesField(11, valueInfo('B', [m, m])),
    ...bytesField(12, valueInfo('Y', [m, m])),
  ];
  const opset = [...stringField(1, ''), ...intField(2, 13)];
  return Uint8Array.from([...intField(1, 7 /* ir_version */), ...bytesField(7, graph), ...bytesField(8, opset)]);
}

/**
 * MatMul multiply-adds per second: `wall` from the best wall-clock run;
 * `perCpu` from process CPU time (x threads), which is what the rate would be
 * with the cores to itself (useful on a shared machine). Spinning of idle
 * intra-op threads is disabled so CPU time counts work only.
 */
async function ortMatMulMacsPerSecond(threads: number, reps: number): Promise<{ wall: number; perCpu: number }> {
  const m = 2048;
  const session = await ort.InferenceSession.create(matMulModel(m), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const a = new ort.Tensor('float32', new Float32Array(m * m).fill(0.5), [m, m]);
  const b = new ort.Tensor('float32', new Float32Array(m * m).fill(0.25), [m, m]);
  const first = await session.run({ A: a, B: b });
  const y = first['Y'];
  if (y === undefined || (y.data as Float32Array)[0] !== m * 0.125) throw new Error('onnxruntime MatMul returned a wrong value');
  return sessionMacsPerSecond(session, { A: a, B: b }, m, threads, reps);
}

// ---- inputs -------------------------------------------------------------------------


/** float32 -> half bits (round to nearest even; inputs are in [0, 1]). */
function toHalf(data: Float32Array): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    f[0] = data[i];
    const bits = u[0];
    const exp = ((bits >>> 23) & 0xff) - 112;
    if (exp <= 0) {
      out[i] = 0; // below half's normal range: negligible for the benchmark
      continue;
    }
    let half = (exp << 10) | ((bits >>> 13) & 0x3ff);
    const rem = bits & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
    out[i] = half | ((bits >>> 16) & 0x8000);
  }
  return out;
}

/** Median wall time and mean process CPU time per call, in ms. */
async function timeFast(reps: number, run: () => Promise<unknown>): Promise<{ fastMs: number; cpuMs: number }> {
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  return { fastMs: median(times), cpuMs: (cpu.user + cpu.system) / 1000 / reps };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}


// ---- cases --------------------------------------------------------------------------------

interface MatchCase {
  name: string;
  c: number;
  h: number;
  w: number;
  f: number;
  b: number;
}

const TEMPLATES = 60;
const MATCH_CASES: MatchCase[] = [
  { name: 'layer1', c: 256, h: 64, w: 64, f: 5, b: 3 },
  { name: 'layer2', c: 512, h: 32, w: 32, f: 5, b: 3 },
  { name: 'layer3', c: 1024, h: 16, w: 16, f: 7, b: 3 },
  { name: 'window13x7', c: 256, h: 64, w: 64, f: 13, b: 7 },
];

interface OrtPeak {
  wall: number;
  perCpu: number;
}

interface Row {
  kernel: string;
  case: string;
  dtype: string;
  variant: string;
  fastMs: number;
  effectiveGmacs: number;
  realGmacs: number;
  ofOrtPeak: number;
  /** effective rate from CPU time (x threads) over ORT's rate from CPU time */
  ofOrtPeakCpu: number;
  referenceMs: number;
  speedup: number;
}

async function benchMatch(fast: FastBackend, k: MatchCase, dtype: 'float32' | 'float16', args: Args, ortPeak: OrtPeak): Promise<Row> {
  const query: QueryMap = { shape: [k.c, k.h, k.w], data: randomUnitMaps(1, k.c, k.h, k.w, 1) };
  const t32 = randomUnitMaps(TEMPLATES, k.c, k.h, k.w, 2);
  const shape = [TEMPLATES, k.c, k.h, k.w] as const;
  const templates: FeatureStack =
    dtype === 'float16' ? { dtype, shape, data: toHalf(t32) } : { dtype, shape, data: t32 };
  const options = { forwardPatch: k.f, backwardPatch: k.b };

  await fast.matchLayer(query, templates, options); // warm-up: scratch allocation, page faults
  const { fastMs, cpuMs } = await timeFast(args.reps, () => fast.matchLayer(query, templates, options));

  const kRef = args.referenceTemplates;
  const refTemplates: FeatureStack = {
    dtype,
    shape: [kRef, k.c, k.h, k.w],
    data: templates.data.subarray(0, kRef * k.c * k.h * k.w) as Float32Array | Uint16Array,
  } as FeatureStack;
  const r0 = performance.now();
  await referenceBackend.matchLayer(query, refTemplates, options);
  const referenceMs = ((performance.now() - r0) * TEMPLATES) / kRef;

  const effective = TEMPLATES * k.h * k.w * k.c * (k.f * k.f + k.b * k.b);
  const real = realMacs(TEMPLATES, k.c, k.h, k.w, Math.max(k.f, k.b) >> 1);
  const effectiveRate = effective / (fastMs / 1000);
  return {
    kernel: 'matchLayer',
    case: `${k.name} K${TEMPLATES} C${k.c} ${k.h}x${k.w} f${k.f} b${k.b}`,
    dtype,
    variant: fast.variant,
    fastMs,
    effectiveGmacs: effectiveRate / 1e9,
    realGmacs: real / (fastMs / 1000) / 1e9,
    ofOrtPeak: effectiveRate / ortPeak.wall,
    ofOrtPeakCpu: (effective / (cpuMs / 1000)) * fast.threads / ortPeak.perCpu,
    referenceMs,
    speedup: referenceMs / fastMs,
  };
}

async function benchGram(fast: FastBackend, n: number, c: number, h: number, w: number, dtype: 'float32' | 'float16', args: Args, ortPeak: OrtPeak): Promise<Row> {
  const t32 = randomUnitMaps(n, c, h, w, 3);
  const shape = [n, c, h, w] as const;
  const stack: FeatureStack = dtype === 'float16' ? { dtype, shape, data: toHalf(t32) } : { dtype, shape, data: t32 };
  const hw = h * w;
  const out = new Float32Array(hw * n * n);
  await fast.pixelGram(stack, 0, hw, out);
  const { fastMs, cpuMs } = await timeFast(args.reps, () => fast.pixelGram(stack, 0, hw, out));
  const r0 = performance.now();
  pixelGramReference(stack, 0, hw, out);
  const referenceMs = performance.now() - r0;
  // Distinct products: the upper triangle with the diagonal, per pixel and channel.
  const effective = hw * c * ((n * (n + 1)) / 2);
  // Computed: 4x4 blocks on and above the diagonal (16-pixel lanes; partial lanes not counted).
  const blocks = Math.ceil(n / 4);
  const real = hw * c * 16 * ((blocks * (blocks + 1)) / 2);
  const effectiveRate = effective / (fastMs / 1000);
  return {
    kernel: 'pixelGram',
    case: `N${n} C${c} ${h}x${w} all pixels`,
    dtype,
    variant: fast.variant,
    fastMs,
    effectiveGmacs: effectiveRate / 1e9,
    realGmacs: real / (fastMs / 1000) / 1e9,
    ofOrtPeak: effectiveRate / ortPeak.wall,
    ofOrtPeakCpu: (effective / (cpuMs / 1000)) * fast.threads / ortPeak.perCpu,
    referenceMs,
    speedup: referenceMs / fastMs,
  };
}

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const fast = await loadFastBackend(args.variant !== undefined ? { variant: args.variant } : {});
  const ortPeak = await ortMatMulMacsPerSecond(fast.threads, 5);
  const header = {
    cpu: cpuModel(),
    logicalCpus: os.availableParallelism(),
    node: process.version,
    fastVariant: fast.variant,
    fastThreads: fast.threads,
    ortMatMulGmacs: ortPeak.wall / 1e9,
    ortMatMulGmacsPerCpu: ortPeak.perCpu / 1e9,
    loadAverage: os.loadavg()[0],
  };
  if (!args.json) {
    console.log(`# hetmm benchmark`);
    console.log(`CPU: ${header.cpu}, ${header.logicalCpus} logical CPUs; Node ${header.node}`);
    console.log(`fast backend: variant ${header.fastVariant}, ${header.fastThreads} threads`);
    console.log(`onnxruntime-node MatMul 2048^3 float32 (${fast.threads} threads): ${header.ortMatMulGmacs.toFixed(1)} GMAC/s (best of 5); ${header.ortMatMulGmacsPerCpu.toFixed(1)} GMAC/s from CPU time`);
    console.log(`1-min load average at start: ${header.loadAverage.toFixed(2)} (other processes skew the figures)\n`);
  }
  if (!args.json && !args.skipKernels) {
    console.log('## Kernels\n');
    console.log('| kernel | case | dtype | fast ms | effective GMAC/s | real GMAC/s | of ORT MatMul | same, CPU-time basis | reference ms | speed-up |');
    console.log('|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  }
  const rows: Row[] = [];
  const emit = (r: Row): void => {
    rows.push(r);
    if (!args.json) {
      console.log(
        `| ${r.kernel} | ${r.case} | ${r.dtype} | ${r.fastMs.toFixed(1)} | ${r.effectiveGmacs.toFixed(1)} | ${r.realGmacs.toFixed(1)} | ` +
          `${(r.ofOrtPeak * 100).toFixed(0)}% | ${(r.ofOrtPeakCpu * 100).toFixed(0)}% | ${r.referenceMs.toFixed(0)} | ${r.speedup.toFixed(0)}x |`,
      );
    }
  };
  for (const k of args.skipKernels ? [] : MATCH_CASES) {
    for (const dtype of ['float32', 'float16'] as const) {
      if (args.only && !`${k.name} ${dtype}`.includes(args.only)) continue;
      emit(await benchMatch(fast, k, dtype, args, ortPeak));
    }
  }
  for (const dtype of args.skipKernels ? [] : (['float32', 'float16'] as const)) {
    if (args.only && !`gram ${dtype}`.includes(args.only)) continue;
    emit(await benchGram(fast, 60, 256, 64, 64, dtype, args, ortPeak));
  }
  let int8Kernels: { peak: { wall: number; perCpu: number }; rows: Int8KernelRow[] } | undefined;
  if (!args.skipKernels && loadBinding().info().int8 === true && (args.only === undefined || 'int8'.includes(args.only))) {
    const peak = await ortMatMulIntegerPeak(fast.threads, 5);
    int8Kernels = { peak, rows: await benchInt8Kernels(args.reps, peak, (line) => !args.json && console.log(line)) };
  }
  let endToEnd: EndToEndReport | undefined;
  if (!args.skipE2e) {
    endToEnd = await runEndToEnd({
      templates: args.templates,
      dtypes: args.dtypes,
      images: args.e2eImages,
      concurrencies: args.concurrencies,
      threadStudy: args.threadStudy,
      threads: args.threads,
      int8: args.int8 && loadBinding().info().int8 === true,
      int8Backbone: args.int8Backbone,
      json: args.json,
    });
  }
  if (args.json) console.log(JSON.stringify({ header, rows, int8Kernels, endToEnd }, null, 2));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
});
