/**
 * The stated false-alarm rate is honest for exchangeable normal scores: over
 * many simulated calibrations the order-statistic threshold's true exceedance
 * averages the stated expected rate, and exceeds the stated 95% bound in at
 * most about 5% of them. And the default cap calibrates a store of Magnetic
 * Tile's size on all its normals: 200 samples spread the true rate so widely
 * that one calibration in 20 lands above 2.35% (docs/THRESHOLDS.md).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_CALIBRATION_SAMPLES, evenSample } from '../src/detector/calibrate.js';
import { falseAlarmPredictionBound, normalOnlyThreshold } from '../src/detector/threshold.js';

/** Deterministic uniform numbers in [0, 1) (32-bit LCG; plenty for these counts). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * `draws` calibrations of n uniform scores: for U(0, 1) scores a threshold t
 * has true exceedance 1 - t, so nothing needs estimating.
 */
function simulate(n: number, rate: number, draws: number, seed: number): { exceedances: number[]; expected: number; bound: number } {
  const next = lcg(seed);
  const exceedances: number[] = [];
  let expected = 0;
  let bound = 0;
  for (let d = 0; d < draws; d++) {
    const t = normalOnlyThreshold(Array.from({ length: n }, next), { falseAlarmRate: rate });
    exceedances.push(1 - t.threshold);
    expected = t.expectedFalseAlarmRate; // depends on n and the rate only (no ties)
    bound = t.falseAlarmBound;
  }
  return { exceedances, expected, bound };
}

const mean = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const quantile = (v: readonly number[], q: number): number => [...v].sort((a, b) => a - b)[Math.floor(q * (v.length - 1))]!;

test('order statistic: the expected rate is the mean true rate, and the 95% bound holds in 95% of calibrations', () => {
  for (const [n, rate] of [[200, 0.01], [761, 0.01], [761, 0.05], [99, 0.01]] as const) {
    const draws = 3000;
    const { exceedances, expected, bound } = simulate(n, rate, draws, 1000 + n);
    assert.ok(expected <= rate + 1e-12, `n ${n}: expected ${expected} above the asked ${rate}`);
    // mean of Beta(n - k + 1, k) is the expected rate; its sd / sqrt(draws) is < 2e-4 here
    assert.ok(Math.abs(mean(exceedances) - expected) < 6e-4, `n ${n}: mean true rate ${mean(exceedances)} vs stated ${expected}`);
    const above = exceedances.filter((e) => e > bound).length / draws;
    // the Clopper-Pearson bound is exact for a continuous score: 5% above it, binomial sd 0.4%
    assert.ok(above > 0.035 && above < 0.065, `n ${n}: ${(above * 100).toFixed(1)}% of calibrations above the 95% bound ${bound}`);
  }
});

test('more normals narrow the true rate: 761 scores instead of 200 shrink its 95th percentile', () => {
  const few = simulate(200, 0.01, 3000, 7);
  const all = simulate(761, 0.01, 3000, 8);
  const [few95, all95] = [quantile(few.exceedances, 0.95), quantile(all.exceedances, 0.95)];
  // Beta(2, 199): 2.35%; Beta(7, 755): 1.55%
  assert.ok(few95 > 0.021 && few95 < 0.026, String(few95));
  assert.ok(all95 > 0.013 && all95 < 0.018, String(all95));
  // on Magnetic Tile the 200-sample threshold had a true (leave-one-out) exceedance of 20/761 = 2.6%:
  // beyond the 95th percentile of the 200-sample law, within the all-normals law's 0.1%
  assert.ok(few.exceedances.filter((e) => e >= 20 / 761).length / 3000 < 0.05);
  assert.ok(all.exceedances.filter((e) => e >= 20 / 761).length / 3000 < 0.002);
});

test('the default cap calibrates a store of 761 normals on all of them', () => {
  assert.ok(DEFAULT_CALIBRATION_SAMPLES >= 761);
  assert.deepEqual(evenSample(761, DEFAULT_CALIBRATION_SAMPLES), Array.from({ length: 761 }, (_, i) => i));
  // above the cap, an even spread that keeps the ends
  const spread = evenSample(3000, DEFAULT_CALIBRATION_SAMPLES);
  assert.equal(spread.length, DEFAULT_CALIBRATION_SAMPLES);
  assert.equal(new Set(spread).size, spread.length);
  assert.ok(spread[0]! < 3 && spread.at(-1)! > 2996);
});

test('prediction bound: the share flagged in a batch of new normals stays under it in 95% of (calibration, batch) draws', () => {
  for (const [n, batch] of [[761, 191], [200, 191], [99, 20]] as const) {
    const next = lcg(99 + n + batch);
    const draws = 3000;
    let over = 0;
    let overOneLess = 0;
    let bound = 0;
    for (let d = 0; d < draws; d++) {
      const scores = Array.from({ length: n }, next);
      const t = normalOnlyThreshold(scores, { falseAlarmRate: 0.01 });
      const exceed = scores.filter((s) => s > t.threshold).length;
      bound = falseAlarmPredictionBound(exceed, n, batch);
      let flagged = 0;
      for (let i = 0; i < batch; i++) if (next() > t.threshold) flagged++;
      if (flagged / batch > bound) over++;
      if (flagged > Math.round(bound * batch) - 1) overOneLess++;
    }
    // a discrete law: at most 5% of batches above the bound, and more than 5% above one image fewer (it is the smallest such bound)
    assert.ok(over / draws < 0.062, `n ${n}, batch ${batch}: ${over} of ${draws} above ${bound}`);
    assert.ok(overOneLess / draws > 0.04, `n ${n}, batch ${batch}: only ${overOneLess} of ${draws} above one image fewer than ${bound}`);
  }
  // Magnetic Tile: 6 of 761 scores above the threshold, 191 good test tiles: 4 flagged (2.1%); with 200 samples, 6 (3.1%)
  assert.equal(falseAlarmPredictionBound(6, 761, 191), 4 / 191);
  assert.equal(falseAlarmPredictionBound(1, 200, 191), 6 / 191);
  assert.equal(falseAlarmPredictionBound(3, 3, 10), 1);
  assert.throws(() => falseAlarmPredictionBound(1, 10, 0), /batch >= 1/);
});
