/**
 * Does the deployment threshold keep its stated false-alarm rate on held-out
 * good images? `node dist/bench/threshold-study.js NORMALS GOOD DEFECTS
 * [RATE,...]` (default 0.01) with three template stores fitted with `hetmm
 * fit ... --no-calibrate` (the training normals, the good test images, the
 * defective test images: stores keep the features, so no image is decoded
 * twice). It calibrates NORMALS with
 * calibrateStore (the code path of `hetmm fit`, timed, int8 matching where
 * the CPU has it), scores every GOOD and DEFECTS image against NORMALS (the
 * calibration's matching precision) and prints JSON: calibration time and
 * load average, leave-one-out vs good-test score quantiles, a two-sample KS
 * test and the Mann-Whitney P(leave-one-out > good), and for the default cap
 * and for 200 evenly spaced samples (the cap before this study: a subset of
 * the same leave-one-out scores, so no second calibration) the threshold,
 * the stated rate and bounds, the measured false alarms and the recall, at
 * the first RATE (the calibration's) and at the others (the same
 * leave-one-out scores: the rate only picks the order statistic).
 */
import os from 'node:os';
import { calibrateStore, evenSample } from '../src/detector/calibrate.js';
import { Detector } from '../src/detector/detector.js';
import { falseAlarmPredictionBound, normalOnlyThreshold } from '../src/detector/threshold.js';
import { TemplateStore } from '../src/store/index.js';
import { templateFeatures } from '../src/store/feature-stack.js';

/** Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value. */
export function kolmogorovSmirnov(a: readonly number[], b: readonly number[]): { d: number; p: number } {
  const x = [...a].sort((u, v) => u - v);
  const y = [...b].sort((u, v) => u - v);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i]! <= v) i++;
    while (j < y.length && y[j]! <= v) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const ne = (x.length * y.length) / (x.length + y.length);
  const lambda = (Math.sqrt(ne) + 0.12 + 0.11 / Math.sqrt(ne)) * d;
  let p = 0;
  for (let k = 1; k <= 100; k++) p += 2 * (-1) ** (k - 1) * Math.exp(-2 * k * k * lambda * lambda);
  return { d, p: Math.min(1, Math.max(0, p)) };
}

/** P(a > b) + P(a = b) / 2 over all pairs (Mann-Whitney U / (|a| |b|)). */
export function probabilityGreater(a: readonly number[], b: readonly number[]): number {
  let u = 0;
  for (const s of a) for (const t of b) u += s > t ? 1 : s === t ? 0.5 : 0;
  return u / (a.length * b.length);
}

function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((u, v) => u - v);
  return s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))]!;
}

async function main(): Promise<void> {
  const [normals, goodStore, defectStore, ratesText] = process.argv.slice(2);
  if (normals === undefined || goodStore === undefined || defectStore === undefined) {
    throw new Error('usage: node dist/bench/threshold-study.js NORMALS.hetmm GOOD.hetmm DEFECTS.hetmm [RATE,...]');
  }
  const rates = (ratesText ?? '0.01').split(',').map(Number);
  const rate = rates[0]!;
  const detector = await Detector.open({ store: normals, backend: 'fast' });
  const load = [os.loadavg()];
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const calibrated = await calibrateStore(detector, { falseAlarmRate: rate });
  const cpu = process.cpuUsage(cpu0);
  const calibrationSeconds = (performance.now() - t0) / 1000;
  load.push(os.loadavg());
  const loo = calibrated.scores;
  const score = async (path: string): Promise<{ files: readonly string[]; scores: number[] }> => {
    const snapshot = (await TemplateStore.load(path)).snapshot();
    const scores: number[] = [];
    for (let i = 0; i < snapshot.count; i++) {
      const { results } = await detector.matchFeatures(templateFeatures(snapshot.layers, i)); // as calibration: the detector's own matching
      scores.push(detector.scoreResults(results).score);
    }
    return { files: snapshot.files, scores };
  };
  const good = await score(goodStore);
  const defects = await score(defectStore);
  load.push(os.loadavg());
  const rules = [
    { name: `all up to the cap (${loo.length})`, scores: loo },
    { name: '200 evenly spaced (the cap before)', scores: evenSample(loo.length, 200).map((i) => loo[i]!) },
  ].flatMap(({ name, scores }) => rates.map((r) => {
    const t = normalOnlyThreshold(scores, { falseAlarmRate: r });
    const falseAlarms = good.scores.filter((s) => s > t.threshold).length;
    const caught = defects.scores.filter((s) => s > t.threshold).length;
    return {
      name,
      samples: scores.length,
      threshold: t.threshold,
      stated: r,
      expected: t.expectedFalseAlarmRate,
      bound95: t.falseAlarmBound,
      predictionBound95: falseAlarmPredictionBound(Math.round(t.empiricalFalseAlarmRate * scores.length), scores.length, good.scores.length),
      falseAlarms: `${falseAlarms} of ${good.scores.length}`,
      measuredFalseAlarmRate: falseAlarms / good.scores.length,
      recall: caught / defects.scores.length,
      ...(t.warning === undefined ? {} : { warning: t.warning }),
    };
  }));
  const qs = [0.5, 0.9, 0.95, 0.98, 0.99, 1];
  console.log(
    JSON.stringify(
      {
        normals: detector.store.count,
        preset: detector.preset.name,
        method: calibrated.method,
        calibrationSeconds,
        calibrationCpuSeconds: (cpu.user + cpu.system) / 1e6,
        loadAverage: load,
        cpus: os.cpus().length,
        quantiles: Object.fromEntries(qs.map((q) => [q, { leaveOneOut: quantile(loo, q), good: quantile(good.scores, q) }])),
        ks: kolmogorovSmirnov(loo, good.scores),
        probabilityLeaveOneOutAboveGood: probabilityGreater(loo, good.scores),
        rules,
        topGood: good.scores
          .map((s, i) => ({ score: s, file: good.files[i] }))
          .sort((a, b) => b.score - a.score)
          .slice(0, 8),
      },
      null,
      1,
    ),
  );
  detector.dispose();
}

await main();
