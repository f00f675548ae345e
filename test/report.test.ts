/**
 * Thresholds at an operating point and their place in the reports: the
 * precision / recall / false-alarm arithmetic on hand-checkable cases, the
 * optional `thresholds` and `reasons` fields of the JSON report, their
 * validation, and their lines in the HTML page.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { HetmmError } from '../src/errors.js';
import { buildReport, reportToJson, writeHtmlReport, type CategoryReport } from '../src/eval/report.js';
import { f1OptimalThreshold, operatingPoint } from '../src/eval/thresholds.js';

describe('operatingPoint', () => {
  it('counts with the rule score > threshold', () => {
    // scores 0.1 0.2 0.3 | 0.25 0.6 0.9 (last three defective); t = 0.25:
    // flagged 0.3 (normal, FP), 0.6, 0.9 (TP); 0.25 is not > 0.25 (FN).
    const p = operatingPoint([0.1, 0.2, 0.3, 0.25, 0.6, 0.9], [0, 0, 0, 1, 1, 1], 0.25);
    assert.equal(p.truePositives, 2);
    assert.equal(p.falsePositives, 1);
    assert.equal(p.precision, 2 / 3);
    assert.equal(p.recall, 2 / 3);
    assert.equal(p.falsePositiveRate, 1 / 3);
  });

  it('undefined rates are null, never NaN', () => {
    const nothingFlagged = operatingPoint([0.1, 0.2], [0, 1], 5);
    assert.equal(nothingFlagged.precision, null);
    assert.equal(nothingFlagged.recall, 0);
    assert.equal(nothingFlagged.falsePositiveRate, 0);
    const onlyNormal = operatingPoint([0.1, 0.9], [0, 0], 0.5);
    assert.equal(onlyNormal.recall, null);
    assert.equal(onlyNormal.precision, 0);
    assert.equal(onlyNormal.falsePositiveRate, 0.5);
    const onlyDefective = operatingPoint([0.1, 0.9], [1, 1], 0.5);
    assert.equal(onlyDefective.falsePositiveRate, null);
    assert.equal(onlyDefective.precision, 1);
  });

  it('at the F1-optimal threshold it reproduces the F1 optimum', () => {
    const scores = [0.1, 0.4, 0.35, 0.8, 0.3, 0.7, 0.2, 0.65];
    const labels: (0 | 1)[] = [0, 0, 1, 1, 0, 1, 0, 0];
    const best = f1OptimalThreshold(scores, labels);
    const p = operatingPoint(scores, labels, best.threshold);
    assert.equal(p.precision, best.precision);
    assert.equal(p.recall, best.recall);
    // Worked by hand: cut above 0.65 flags 0.7, 0.8 -> P 1, R 2/3, F1 0.8; any lower cut is worse.
    assert.equal(best.f1, 0.8);
  });

  it('rejects a non-finite threshold and malformed input', () => {
    assert.throws(() => operatingPoint([0.1], [0], NaN), (e: unknown) => e instanceof HetmmError && /finite threshold, but received NaN/.test(e.message));
    assert.throws(() => operatingPoint([0.1, 0.2], [0], 0.5), /as many labels as scores/);
  });
});

describe('report thresholds and reasons', () => {
  const withThresholds: CategoryReport = {
    name: 'bottle',
    image_auroc: 1,
    pixel_auroc: null,
    aupro: null,
    pro_hetmm: null,
    f1_image: 1,
    images: 10,
    templates: 5,
    seconds_per_image: 0.1,
    thresholds: {
      f1_optimal: { threshold: 0.5, method: 'best F1', precision: 1, recall: 1, false_positive_rate: 0 },
      normal_only: null,
    },
    reasons: { pixel_auroc: 'no ground-truth masks', aupro: 'no ground-truth masks', pro_hetmm: 'no ground-truth masks', normal_only: 'not calibrated' },
  };

  it('are written after the issue fields, and omitted when absent', () => {
    const plain: CategoryReport = { ...withThresholds, thresholds: undefined, reasons: undefined };
    const doc = JSON.parse(reportToJson(buildReport('x', [withThresholds, plain]))) as { categories: Record<string, unknown>[] };
    assert.deepEqual(Object.keys(doc.categories[0]!), [
      'name', 'image_auroc', 'pixel_auroc', 'aupro', 'pro_hetmm', 'f1_image', 'images', 'templates', 'seconds_per_image', 'thresholds', 'reasons',
    ]);
    assert.deepEqual(doc.categories[0]!['thresholds'], withThresholds.thresholds);
    assert.equal((doc.categories[0]!['reasons'] as Record<string, string>)['aupro'], 'no ground-truth masks');
    assert.deepEqual(Object.keys(doc.categories[1]!), [
      'name', 'image_auroc', 'pixel_auroc', 'aupro', 'pro_hetmm', 'f1_image', 'images', 'templates', 'seconds_per_image',
    ]);
  });

  it('are validated: rates are fractions, thresholds finite', () => {
    const badRate = { ...withThresholds, thresholds: { f1_optimal: { ...withThresholds.thresholds!.f1_optimal!, recall: 100 }, normal_only: null } };
    assert.throws(() => buildReport('x', [badRate]), /thresholds\.f1_optimal\.recall to be a fraction/);
    const badThreshold = { ...withThresholds, thresholds: { f1_optimal: null, normal_only: { ...withThresholds.thresholds!.f1_optimal!, threshold: NaN } } };
    assert.throws(() => buildReport('x', [badThreshold]), /thresholds\.normal_only to be null or \{threshold \(finite\)/);
  });

  it('appear in the HTML page with the reasons for n/a', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'hetmm-report-th-'));
    try {
      const index = await writeHtmlReport(dir, buildReport('x', [withThresholds]), { bottle: [] });
      const html = readFileSync(index, 'utf8');
      assert.match(html, /F1-optimal threshold: score &gt; 0\.5000 \(best F1\): precision 100\.0, recall 100\.0, false alarms 0\.0/);
      assert.ok(!html.includes('Deployment threshold'), 'no line for an absent threshold');
      assert.match(html, /pixel_auroc n\/a: no ground-truth masks/);
      assert.match(html, /normal_only n\/a: not calibrated/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
