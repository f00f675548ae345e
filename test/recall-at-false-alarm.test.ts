/**
 * Recall at stated false-alarm rates and the ROC curve: hand-made cases with
 * ties (worked out in the comments), agreement with a brute-force search
 * over every score as a threshold on seeded random data (fast-check, fixed
 * seed), degenerate inputs, and the report fields, table column and SVG
 * built from them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildReport, formatTable, reportToJson, writeHtmlReport, type CategoryReport } from '../src/eval/report.js';
import { lowFalseAlarmReports, REPORTED_FALSE_ALARM_RATES } from '../src/eval/low-false-alarm.js';
import { imageAuroc, recallAtFalseAlarmRate, rocCurve } from '../src/metrics/index.js';
import { rng } from './helpers/random.js';

/** Every score (and +inf) tried as a threshold: the lowest one flagging at most floor(rate N) normals, and the best recall at all admissible ones. */
function bruteForce(scores: number[], labels: (0 | 1)[], rate: number) {
  const good = scores.filter((_, i) => labels[i] === 0);
  const bad = scores.filter((_, i) => labels[i] === 1);
  const allowed = Math.floor(rate * good.length + 1e-9);
  let best: { threshold: number; recall: number | null; falseAlarms: number } | undefined;
  let bestRecall = -1;
  for (const t of [...scores].sort((a, b) => a - b)) {
    const falseAlarms = good.filter((s) => s > t).length;
    if (falseAlarms > allowed) continue;
    const recall = bad.length > 0 ? bad.filter((s) => s > t).length / bad.length : null;
    best ??= { threshold: t, recall, falseAlarms }; // ascending: the first admissible is the lowest
    bestRecall = Math.max(bestRecall, recall ?? -1);
  }
  return { ...best!, allowed, bestRecall };
}

describe('recallAtFalseAlarmRate', () => {
  it('hand-made case with ties at the cut: tied normals are not flagged, so the reached rate falls below the stated one', () => {
    // normals descending 5, 5, 3, 2, 1, 1, 1, 0, 0, 0 (N = 10); defects 6, 5, 4, 3.
    const good = [5, 5, 3, 2, 1, 1, 1, 0, 0, 0];
    const bad = [6, 5, 4, 3];
    const scores = [...good, ...bad];
    const labels = [...good.map(() => 0 as const), ...bad.map(() => 1 as const)];
    const r = recallAtFalseAlarmRate(scores, labels, [0, 0.1, 0.2, 0.3, 0.5]);
    assert.equal(r.value, r.value ?? assert.fail(r.reason));
    const [zero, ten, twenty, thirty, half] = r.value;
    // rate 0 and 10%: k = 0 and 1; g[0] = g[1] = 5, so > 5 flags no normal: only the 6 is found.
    for (const p of [zero!, ten!]) {
      assert.equal(p.threshold, 5);
      assert.equal(p.falseAlarms, 0);
      assert.equal(p.falseAlarmRate, 0);
      assert.equal(p.recall, 1 / 4);
    }
    assert.equal(ten!.allowedFalseAlarms, 1);
    // 20%: k = 2, g[2] = 3: the two 5s are flagged (2 false alarms), defects 6, 5, 4 found; the defect tied at 3 is not.
    assert.deepEqual(twenty, { rate: 0.2, threshold: 3, recall: 3 / 4, falseAlarmRate: 0.2, falseAlarms: 2, allowedFalseAlarms: 2 });
    // 30%: k = 3, g[3] = 2: three normals (5, 5, 3) flagged, all four defects found.
    assert.deepEqual(thirty, { rate: 0.3, threshold: 2, recall: 1, falseAlarmRate: 0.3, falseAlarms: 3, allowedFalseAlarms: 3 });
    // 50%: k = 5, g[5] = 1: the three 1s tie at the cut, so only 4 false alarms (40%) although 5 are allowed.
    assert.deepEqual(half, { rate: 0.5, threshold: 1, recall: 1, falseAlarmRate: 0.4, falseAlarms: 4, allowedFalseAlarms: 5 });
  });

  it('too few normals for a rate: no false alarm allowed, the threshold is the highest normal score', () => {
    // 191 normals (Magnetic Tile's test set): 0.1% x 191 = 0.191 -> 0 allowed; 1% -> 1; 5% -> 9.
    const random = rng(7);
    const good = Array.from({ length: 191 }, () => random());
    const bad = Array.from({ length: 50 }, () => random() + 0.5);
    const labels = [...good.map(() => 0 as const), ...bad.map(() => 1 as const)];
    const r = recallAtFalseAlarmRate([...good, ...bad], labels, [0.001, 0.01, 0.05]).value!;
    assert.deepEqual(r.map((p) => p.allowedFalseAlarms), [0, 1, 9]);
    assert.equal(r[0]!.threshold, Math.max(...good));
    assert.equal(r[0]!.falseAlarms, 0);
    assert.equal(r[0]!.recall, bad.filter((s) => s > Math.max(...good)).length / bad.length);
  });

  it('binary rounding of rate x N does not lose an allowed false alarm (0.29 x 100 = 28.999...)', () => {
    assert.ok(0.29 * 100 < 29);
    const good = Array.from({ length: 100 }, (_, i) => i);
    const r = recallAtFalseAlarmRate([...good, 1000], [...good.map(() => 0 as const), 1], [0.29]).value![0]!;
    assert.equal(r.allowedFalseAlarms, 29);
    assert.equal(r.falseAlarms, 29);
    assert.equal(r.threshold, 70);
  });

  it('agrees with a brute-force search on random data with ties', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.constantFrom<0 | 1>(0, 1)), { minLength: 1, maxLength: 60 }),
        fc.array(fc.double({ min: 0, max: 0.999, noNaN: true }), { minLength: 1, maxLength: 4 }),
        (pairs, rates) => {
          // integer scores 0..12 scaled: many ties, also across labels
          const scores = pairs.map(([s]) => s / 4);
          const labels = pairs.map(([, l]) => l);
          const r = recallAtFalseAlarmRate(scores, labels, rates);
          if (!labels.includes(0)) {
            assert.equal(r.value, null);
            return;
          }
          rates.forEach((rate, i) => {
            const got = r.value![i]!;
            const want = bruteForce(scores, labels, rate);
            assert.equal(got.threshold, want.threshold);
            assert.equal(got.recall, want.recall);
            assert.equal(got.falseAlarms, want.falseAlarms);
            assert.equal(got.allowedFalseAlarms, want.allowed);
            assert.ok(got.falseAlarms <= got.allowedFalseAlarms);
            if (got.recall !== null) assert.equal(got.recall, want.bestRecall, 'the lowest admissible threshold has the best recall');
          });
        },
      ),
      { seed: 20, numRuns: 400 },
    );
  });

  it('degenerate input: no normals -> null with a reason; no defects -> recall null; bad rates and scores throw E_ARGUMENT', () => {
    const none = recallAtFalseAlarmRate([1, 2], [1, 1], [0.01]);
    assert.equal(none.value, null);
    assert.match(none.reason!, /no normal test image/);
    assert.equal(recallAtFalseAlarmRate([1, 2], [0, 0], [0.5]).value![0]!.recall, null);
    for (const rate of [1, -0.01, NaN, 2]) {
      assert.throws(() => recallAtFalseAlarmRate([1, 2], [0, 1], [rate]), (e: Error & { code?: string }) => e.code === 'E_ARGUMENT' && /rates in \[0, 1\)/.test(e.message));
    }
    assert.throws(() => recallAtFalseAlarmRate([1, NaN], [0, 1], [0.1]), (e: Error & { code?: string }) => e.code === 'E_ARGUMENT');
    assert.throws(() => recallAtFalseAlarmRate([], [], [0.1]), (e: Error & { code?: string }) => e.code === 'E_ARGUMENT');
  });
});

describe('rocCurve', () => {
  it('hand-made case with a tie across labels: the tie moves both rates in one step', () => {
    // defects 3, 2; normals 2, 1: thresholds 3 -> (0, 1/2), 2 -> (1/2, 1), 1 -> (1, 1)
    assert.deepEqual(rocCurve([3, 2, 2, 1], [1, 1, 0, 0]), { falsePositiveRate: [0, 0, 0.5, 1], truePositiveRate: [0, 0.5, 1, 1] });
    assert.equal(rocCurve([1, 2], [0, 0]), null);
  });

  it('its trapezoid area is the image AUROC on random data', () => {
    const random = rng(11);
    const scores = Array.from({ length: 300 }, () => Math.round(random() * 40));
    const labels = scores.map((s) => (random() < 0.3 + s / 100 ? 1 : 0) as 0 | 1);
    const roc = rocCurve(scores, labels)!;
    let area = 0;
    for (let i = 1; i < roc.falsePositiveRate.length; i++) {
      area += (roc.falsePositiveRate[i]! - roc.falsePositiveRate[i - 1]!) * (roc.truePositiveRate[i]! + roc.truePositiveRate[i - 1]!) / 2;
    }
    assert.ok(Math.abs(area - imageAuroc(scores, labels).value!) < 1e-12);
    assert.deepEqual([roc.falsePositiveRate.at(-1), roc.truePositiveRate.at(-1)], [1, 1]);
  });
});

describe('low-false-alarm report fields', () => {
  const random = rng(3);
  const good = Array.from({ length: 200 }, () => random());
  const bad = Array.from({ length: 40 }, () => random() * 0.5 + 0.6);
  const scores = [...good, ...bad];
  const labels = [...good.map(() => 0 as const), ...bad.map(() => 1 as const)];
  const reasons: Record<string, string> = {};
  const low = lowFalseAlarmReports(scores, labels, reasons);
  const category: CategoryReport = {
    name: 'tile',
    image_auroc: imageAuroc(scores, labels).value,
    pixel_auroc: null,
    aupro: null,
    pro_hetmm: null,
    f1_image: null,
    images: scores.length,
    templates: 10,
    seconds_per_image: 0.1,
    thresholds: {
      f1_optimal: null,
      normal_only: { threshold: 0.99, method: 'leave-one-out', precision: 1, recall: 0.5, false_positive_rate: 0.005 },
      at_false_alarm_rates: low.at_false_alarm_rates,
    },
    ...(low.roc === undefined ? {} : { roc: low.roc }),
  };

  it('carry recall at 0.1%, 1% and 5% and the ROC into JSON; the table prints recall at 1%', () => {
    assert.deepEqual(REPORTED_FALSE_ALARM_RATES, [0.001, 0.01, 0.05]);
    assert.deepEqual(reasons, {});
    const doc = JSON.parse(reportToJson(buildReport('d', [category]))) as { categories: CategoryReport[] };
    const at = doc.categories[0]!.thresholds!.at_false_alarm_rates!;
    assert.deepEqual(at.map((p) => [p.stated_false_alarm_rate, p.allowed_false_alarms, p.good_images]), [[0.001, 0, 200], [0.01, 2, 200], [0.05, 10, 200]]);
    const oneRecall = bruteForce(scores, labels, 0.01).recall!;
    assert.equal(at[1]!.recall, oneRecall);
    assert.equal(doc.categories[0]!.roc!.false_positive_rate.length, doc.categories[0]!.roc!.recall.length);
    const table = formatTable(buildReport('d', [category]));
    assert.match(table, /recall@1%FA/);
    assert.match(table, new RegExp(`^tile\\s.*\\s${(oneRecall * 100).toFixed(1).replace('.', '\\.')}\\s+240\\s+10\\s`, 'm'));
  });

  it('are validated: more false alarms than allowed, a wrong reached rate or a falling ROC are refused', () => {
    const at = category.thresholds!.at_false_alarm_rates!;
    const withAt = (p: object): CategoryReport => ({ ...category, thresholds: { ...category.thresholds!, at_false_alarm_rates: [{ ...at[1]!, ...p }] } });
    assert.throws(() => buildReport('d', [withAt({ false_alarms: 3 })]), /false alarms allowed/);
    assert.throws(() => buildReport('d', [withAt({ allowed_false_alarms: 5, false_alarms: 2 })]), /false alarms allowed/);
    assert.throws(() => buildReport('d', [withAt({ false_positive_rate: 0.5 })]), /false_alarms \/ good_images/);
    assert.throws(() => buildReport('d', [withAt({ recall: 2 })]), /at_false_alarm_rates\[0\]\.recall to be a fraction/);
    assert.throws(() => buildReport('d', [withAt({ threshold: Infinity })]), /threshold \(finite\)/);
    const falling = { ...category, roc: { false_positive_rate: [0, 0.5, 0.4], recall: [0, 1, 1] } };
    assert.throws(() => buildReport('d', [falling]), /roc to be non-decreasing/);
    assert.throws(() => buildReport('d', [{ ...category, roc: { false_positive_rate: [0, 1], recall: [0] } }]), /equal length/);
  });

  it('no good test images: null with its reason, and no ROC', () => {
    const r: Record<string, string> = {};
    const none = lowFalseAlarmReports([1, 2], [1, 1], r);
    assert.equal(none.at_false_alarm_rates, null);
    assert.equal(none.roc, undefined);
    assert.match(r['at_false_alarm_rates']!, /no normal test image/);
  });

  it('the HTML page draws the ROC as inline SVG with the three operating points and the deployment threshold', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'hetmm-report-roc-'));
    try {
      const html = readFileSync(await writeHtmlReport(dir, buildReport('d', [category]), { tile: [] }), 'utf8');
      const svg = html.slice(html.indexOf('<svg'), html.indexOf('</svg>'));
      assert.ok(svg.length > 0, 'an inline svg');
      assert.ok(!/https?:\/\/(?!www\.w3\.org\/2000\/svg)/.test(html), 'no network reference');
      assert.equal((svg.match(/<circle/g) ?? []).length, 3, 'one dot per stated rate');
      assert.match(svg, /deployment: recall 50%/);
      assert.match(svg, /1%: recall \d/);
      assert.match(html, /at most 1\.0%: recall \d+\.\d% \(score &gt; [\d.]+; \d+ of 200 good images flagged, 2 allowed\)/);
      const vertices = svg.match(/<polyline points="([^"]+)"/)![1]!.split(' ');
      assert.equal(vertices.length, low.roc!.false_positive_rate.length);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
