/**
 * Evaluation reports: one JSON shape (what `hetmm eval --json` writes and
 * what benchmark tables are built from), a terminal table, and an HTML page
 * with the worst false positives and false negatives of each category.
 *
 * All metrics are stored as fractions in [0, 1], including `pro_hetmm`
 * (HETMM's PRO divided by 100, so every column has the same unit); null
 * means undefined for that category (e.g. no masks) and prints as "n/a".
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HetmmError } from '../errors.js';
import { rocSvg } from './roc-svg.js';

export const METRIC_KEYS = ['image_auroc', 'pixel_auroc', 'aupro', 'pro_hetmm', 'f1_image'] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];

export type MetricValues = { readonly [K in MetricKey]: number | null };

/** An image-level decision threshold and how it does on the test images (rule: score > threshold). */
export interface ThresholdReport {
  readonly threshold: number;
  /** how it was chosen, in words */
  readonly method: string;
  /** TP / (TP + FP); null when no image is flagged */
  readonly precision: number | null;
  /** TP / defective images; null when there is no defective image */
  readonly recall: number | null;
  /** share of normal test images flagged (false alarms); null when there is no normal image */
  readonly false_positive_rate: number | null;
  /** deployment threshold: the false-alarm rate it was calibrated for */
  readonly stated_false_alarm_rate?: number;
  /** deployment threshold: expected false-alarm rate on new normal images, from the calibration sample */
  readonly expected_false_alarm_rate?: number;
  /** deployment threshold: one-sided 95% upper bound on it (Clopper-Pearson) */
  readonly false_alarm_bound?: number;
  /**
   * deployment threshold: one-sided 95% upper prediction bound on the false
   * alarms among this many good test images (calibration and test sampling
   * both counted): what `false_positive_rate` is to be held against
   */
  readonly false_alarm_prediction_bound?: number;
  /** deployment threshold: set when too few normals support the stated rate */
  readonly false_alarm_warning?: string;
}

/** A tuned preset (`--preset tune`): what was chosen, its proxy scores on synthetic defects and the time it took. */
export interface TuningReport {
  readonly preset: string;
  readonly seconds: number;
  readonly candidates: number;
  readonly proxy: { readonly image_auroc: number; readonly pixel_auroc: number; readonly aupro: number };
  readonly default_proxy: { readonly image_auroc: number; readonly pixel_auroc: number; readonly aupro: number };
  /** the band cue step (docs/TUNING.md): chosen weight (0 = off) and the normals' band structure */
  readonly bands?: { readonly weight: number; readonly structure: number };
}

/**
 * Recall at a stated false-alarm rate, measured on the test set's good
 * images (recallAtFalseAlarmRate): the lowest threshold letting at most
 * floor(rate x good images) of them score above it. Chosen on the test set
 * itself, like f1_optimal: what the scores allow, not a deployable threshold.
 */
export interface FalseAlarmRateReport {
  readonly stated_false_alarm_rate: number;
  readonly threshold: number;
  /** defective test images above the threshold / defective test images; null without any */
  readonly recall: number | null;
  /** the false-alarm rate reached on the good test images (at most the stated one; lower under ties) */
  readonly false_positive_rate: number;
  readonly false_alarms: number;
  /** floor(stated rate x good images): 0 when there are fewer than 1 / rate good images */
  readonly allowed_false_alarms: number;
  readonly good_images: number;
}

/** The two thresholds of docs/THRESHOLDS.md, each null (with its reason in `reasons`) when unavailable. */
export interface CategoryThresholds {
  /** the best-F1 threshold of the labelled test scores (optimistic: chosen on the test set itself) */
  readonly f1_optimal: ThresholdReport | null;
  /** the store's deployment threshold (leave-one-out normal scores, no defect seen) */
  readonly normal_only: ThresholdReport | null;
  /** recall at false-alarm rates 0.1%, 1% and 5% of the good test images; null without good test images */
  readonly at_false_alarm_rates?: readonly FalseAlarmRateReport[] | null;
}

/** The image-level ROC curve's vertices on the test images, false-positive rate ascending, from (0, 0) to (1, 1). */
export interface RocReport {
  readonly false_positive_rate: readonly number[];
  readonly recall: readonly number[];
}

export interface CategoryReport extends MetricValues {
  readonly name: string;
  /** test images evaluated */
  readonly images: number;
  /** templates in the store (after PTS selection, if any) */
  readonly templates: number;
  /** wall time per test image, seconds */
  readonly seconds_per_image: number;
  /** decision thresholds and their precision / recall on the test images (optional) */
  readonly thresholds?: CategoryThresholds;
  /** why a metric or threshold is null, by key (e.g. `pixel_auroc`, `f1_optimal`) */
  readonly reasons?: Readonly<Record<string, string>>;
  /** the tuned preset, when the category was fitted with `--preset tune` */
  readonly tuning?: TuningReport;
  /** the ROC curve (drawn at low false-alarm rates in the HTML report); absent without good or defective test images */
  readonly roc?: RocReport;
}

export interface EvalReport {
  readonly dataset: string;
  readonly categories: readonly CategoryReport[];
  /** per metric, the mean over the categories where it is defined; null if none */
  readonly mean: MetricValues;
}

/** Mean of each metric over the categories where it is defined (not null). */
export function meanOfCategories(categories: readonly CategoryReport[]): MetricValues {
  const mean = {} as { [K in MetricKey]: number | null };
  for (const key of METRIC_KEYS) {
    let sum = 0;
    let count = 0;
    for (const c of categories) {
      const v = c[key];
      if (v !== null) {
        sum += v;
        count++;
      }
    }
    mean[key] = count > 0 ? sum / count : null;
  }
  return mean;
}

/** A report with its `mean` computed; validates every field (see validateReport). */
export function buildReport(dataset: string, categories: readonly CategoryReport[]): EvalReport {
  const report: EvalReport = { dataset, categories: [...categories], mean: meanOfCategories(categories) };
  validateReport(report);
  return report;
}

function checkMetric(where: string, key: string, v: unknown): void {
  if (v !== null && (typeof v !== 'number' || !(v >= 0 && v <= 1))) {
    throw new HetmmError(
      'E_ARGUMENT',
      `report: expected ${where}.${key} to be a fraction in [0, 1] or null, but received ${String(v)}` +
        (typeof v === 'number' && v > 1 && v <= 100 ? ' (a percentage? divide by 100)' : ''),
    );
  }
}

function isCount(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 0;
}

function validateFalseAlarmRates(where: string, list: readonly FalseAlarmRateReport[] | null | undefined): void {
  if (list === undefined || list === null) return;
  if (!Array.isArray(list)) throw new HetmmError('E_ARGUMENT', `report: expected ${where} to be null or an array`);
  list.forEach((p, i) => {
    const at = `${where}[${i}]`;
    if (typeof p !== 'object' || p === null || !Number.isFinite(p.threshold)) {
      throw new HetmmError('E_ARGUMENT', `report: expected ${at} to be {stated_false_alarm_rate, threshold (finite), recall, ...}`);
    }
    for (const key of ['stated_false_alarm_rate', 'recall', 'false_positive_rate'] as const) checkMetric(at, key, p[key]);
    if (p.stated_false_alarm_rate === null || p.false_positive_rate === null) {
      throw new HetmmError('E_ARGUMENT', `report: expected ${at}.stated_false_alarm_rate and .false_positive_rate to be numbers`);
    }
    if (!isCount(p.good_images) || p.good_images === 0 || !isCount(p.false_alarms) || !isCount(p.allowed_false_alarms)) {
      throw new HetmmError('E_ARGUMENT', `report: expected ${at}.good_images (> 0), .false_alarms and .allowed_false_alarms to be integers >= 0`);
    }
    // the defining promise: never more false alarms than the stated rate allows
    if (p.false_alarms > p.allowed_false_alarms || p.allowed_false_alarms > p.stated_false_alarm_rate * p.good_images + 1e-9) {
      throw new HetmmError(
        'E_ARGUMENT',
        `report: ${at} has ${String(p.false_alarms)} false alarms allowed ${String(p.allowed_false_alarms)} of ${String(p.good_images)} good images at a stated rate of ${String(p.stated_false_alarm_rate)}`,
      );
    }
    if (Math.abs(p.false_positive_rate - p.false_alarms / p.good_images) > 1e-12) {
      throw new HetmmError('E_ARGUMENT', `report: expected ${at}.false_positive_rate to be false_alarms / good_images`);
    }
  });
}

function validateRoc(where: string, roc: RocReport): void {
  const fpr = roc.false_positive_rate;
  const tpr = roc.recall;
  if (!Array.isArray(fpr) || !Array.isArray(tpr) || fpr.length !== tpr.length || fpr.length < 2) {
    throw new HetmmError('E_ARGUMENT', `report: expected ${where} to hold two arrays of equal length >= 2 (false_positive_rate, recall)`);
  }
  for (let i = 0; i < fpr.length; i++) {
    checkMetric(where, `false_positive_rate[${i}]`, fpr[i]);
    checkMetric(where, `recall[${i}]`, tpr[i]);
    if (i > 0 && (fpr[i]! < fpr[i - 1]! || tpr[i]! < tpr[i - 1]!)) {
      throw new HetmmError('E_ARGUMENT', `report: expected ${where} to be non-decreasing in both rates, but it falls at index ${i}`);
    }
  }
}

/** Throws HetmmError('E_ARGUMENT') naming the first field that does not fit the report shape. */
export function validateReport(report: EvalReport): void {
  if (typeof report.dataset !== 'string') throw new HetmmError('E_ARGUMENT', 'report: expected dataset to be a string');
  report.categories.forEach((c, i) => {
    const where = `categories[${i}] (${c.name})`;
    if (typeof c.name !== 'string' || c.name === '') {
      throw new HetmmError('E_ARGUMENT', `report: expected categories[${i}].name to be a non-empty string`);
    }
    for (const key of METRIC_KEYS) checkMetric(where, key, c[key]);
    for (const key of ['images', 'templates'] as const) {
      if (!Number.isInteger(c[key]) || c[key] < 0) {
        throw new HetmmError('E_ARGUMENT', `report: expected ${where}.${key} to be an integer >= 0, but received ${String(c[key])}`);
      }
    }
    if (!(Number.isFinite(c.seconds_per_image) && c.seconds_per_image >= 0)) {
      throw new HetmmError('E_ARGUMENT', `report: expected ${where}.seconds_per_image >= 0, but received ${String(c.seconds_per_image)}`);
    }
    if (c.thresholds !== undefined) {
      for (const kind of ['f1_optimal', 'normal_only'] as const) {
        const t = c.thresholds[kind];
        if (t === null) continue;
        if (typeof t !== 'object' || !Number.isFinite(t.threshold) || typeof t.method !== 'string') {
          throw new HetmmError('E_ARGUMENT', `report: expected ${where}.thresholds.${kind} to be null or {threshold (finite), method, ...}`);
        }
        for (const key of ['precision', 'recall', 'false_positive_rate'] as const) checkMetric(`${where}.thresholds.${kind}`, key, t[key]);
      }
      validateFalseAlarmRates(`${where}.thresholds.at_false_alarm_rates`, c.thresholds.at_false_alarm_rates);
    }
    if (c.roc !== undefined) validateRoc(`${where}.roc`, c.roc);
  });
  for (const key of METRIC_KEYS) checkMetric('mean', key, report.mean[key]);
}

/** The JSON document, keys in a fixed order. */
export function reportToJson(report: EvalReport): string {
  validateReport(report);
  const metrics = (m: MetricValues) => Object.fromEntries(METRIC_KEYS.map((k) => [k, m[k]]));
  const doc = {
    dataset: report.dataset,
    categories: report.categories.map((c) => ({
      name: c.name,
      ...metrics(c),
      images: c.images,
      templates: c.templates,
      seconds_per_image: c.seconds_per_image,
      ...(c.thresholds === undefined ? {} : { thresholds: c.thresholds }),
      ...(c.tuning === undefined ? {} : { tuning: c.tuning }),
      ...(c.roc === undefined ? {} : { roc: c.roc }),
      ...(c.reasons === undefined || Object.keys(c.reasons).length === 0 ? {} : { reasons: c.reasons }),
    })),
    mean: metrics(report.mean),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Writes the report as JSON. Written to a temporary file next to the target
 * and renamed, so an interrupted run never leaves a half-written report.
 * Throws HetmmError('E_ARGUMENT') for an invalid report.
 */
export async function writeJsonReport(file: string, report: EvalReport): Promise<void> {
  const text = reportToJson(report);
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, 'utf8');
  await rename(tmp, file);
}

const COLUMN_TITLES: Readonly<Record<MetricKey, string>> = {
  image_auroc: 'image AUROC',
  pixel_auroc: 'pixel AUROC',
  aupro: 'AUPRO',
  pro_hetmm: 'PRO (HETMM)',
  f1_image: 'F1 image',
};

/** A fraction as a percentage with one decimal ("99.5"), or "n/a". */
export function formatPercent(v: number | null): string {
  return v === null ? 'n/a' : (v * 100).toFixed(1);
}

/** Recall at the stated false-alarm rate `rate` (at_false_alarm_rates), or null when not reported. */
function recallAtRate(c: CategoryReport, rate: number): number | null {
  return c.thresholds?.at_false_alarm_rates?.find((p) => p.stated_false_alarm_rate === rate)?.recall ?? null;
}

function tableRows(report: EvalReport): string[][] {
  const header = ['category', ...METRIC_KEYS.map((k) => COLUMN_TITLES[k]), 'recall@1%FA', 'images', 'templates', 's/image'];
  const rows = report.categories.map((c) => [
    c.name,
    ...METRIC_KEYS.map((k) => formatPercent(c[k])),
    formatPercent(recallAtRate(c, 0.01)),
    String(c.images),
    String(c.templates),
    c.seconds_per_image.toFixed(3),
  ]);
  const mean = ['mean', ...METRIC_KEYS.map((k) => formatPercent(report.mean[k])), '', '', '', ''];
  return [header, ...rows, mean];
}

/**
 * The report as a plain-text table: metrics in percent with one decimal,
 * "n/a" for undefined ones, a mean row last. Numbers are right-aligned.
 */
export function formatTable(report: EvalReport): string {
  const rows = tableRows(report);
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  const line = (r: string[]) => r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const [header, ...body] = rows;
  const meanRow = body.pop()!;
  return [`${report.dataset}`, line(header!), rule, ...body.map(line), rule, line(meanRow)].join('\n') + '\n';
}

/** One test image for the HTML report; the pipeline renders the PNGs. */
export interface ExampleImage {
  readonly file: string;
  readonly score: number;
  readonly label: 0 | 1;
  /** the image with its anomaly heat map overlaid */
  readonly overlayPng: Buffer;
  /** the ground-truth mask, when there is one */
  readonly maskPng?: Buffer;
}

/**
 * The worst cases of a category: normal images with the highest scores
 * (false positives first) and defective images with the lowest scores
 * (false negatives first), `count` of each. Works on any {score, label}, so
 * the pipeline can pick the images before rendering their overlays.
 */
export function selectWorstExamples<T extends { readonly score: number; readonly label: 0 | 1 }>(
  samples: readonly T[],
  count = 8,
): { falsePositives: T[]; falseNegatives: T[] } {
  if (!Number.isInteger(count) || count < 0) {
    throw new HetmmError('E_ARGUMENT', `selectWorstExamples: expected an integer count >= 0, but received ${String(count)}`);
  }
  const falsePositives = samples.filter((s) => s.label === 0).sort((a, b) => b.score - a.score).slice(0, count);
  const falseNegatives = samples.filter((s) => s.label === 1).sort((a, b) => a.score - b.score).slice(0, count);
  return { falsePositives, falseNegatives };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** One line per decision threshold and per undefined metric (its reason), as HTML paragraphs. */
function categoryNotesHtml(c: CategoryReport): string[] {
  const lines: string[] = [];
  const describe = (title: string, t: ThresholdReport | null | undefined): void => {
    if (t === null || t === undefined) return;
    lines.push(
      `<p>${title}: score &gt; ${t.threshold.toPrecision(4)} (${escapeHtml(t.method)}): precision ${formatPercent(t.precision)}, ` +
        `recall ${formatPercent(t.recall)}, false alarms ${formatPercent(t.false_positive_rate)} (percent)` +
        (t.expected_false_alarm_rate === undefined
          ? ''
          : `; stated rate ${formatPercent(t.stated_false_alarm_rate ?? null)}, expected ${formatPercent(t.expected_false_alarm_rate)}, ` +
            `95% upper bound ${formatPercent(t.false_alarm_bound ?? null)}` +
            (t.false_alarm_prediction_bound === undefined ? '' : `, on this many good images ${formatPercent(t.false_alarm_prediction_bound)}`)) +
        (t.false_alarm_warning === undefined ? '' : ` (${escapeHtml(t.false_alarm_warning)})`) +
        '</p>',
    );
  };
  if (c.tuning !== undefined) {
    const p = (x: { image_auroc: number; pixel_auroc: number; aupro: number }): string =>
      `image AUROC ${formatPercent(x.image_auroc)}, pixel AUROC ${formatPercent(x.pixel_auroc)}, AUPRO ${formatPercent(x.aupro)}`;
    lines.push(
      `<p>Tuned preset (${escapeHtml(c.tuning.preset)}) in ${c.tuning.seconds.toFixed(1)} s, ${c.tuning.candidates} candidates; ` +
        `proxy on synthetic defects ${p(c.tuning.proxy)} (default ${p(c.tuning.default_proxy)})</p>`,
    );
  }
  describe('Deployment threshold', c.thresholds?.normal_only);
  describe('F1-optimal threshold', c.thresholds?.f1_optimal);
  const atRates = c.thresholds?.at_false_alarm_rates;
  if (atRates !== undefined && atRates !== null && atRates.length > 0) {
    lines.push(
      '<p>Recall at stated false-alarm rates (each threshold chosen on the good test images, so optimistic like the F1-optimal one): ' +
        atRates
          .map(
            (p) =>
              `at most ${formatPercent(p.stated_false_alarm_rate)}%: recall ${formatPercent(p.recall)}% ` +
              `(score &gt; ${p.threshold.toPrecision(4)}; ${p.false_alarms} of ${p.good_images} good images flagged, ${p.allowed_false_alarms} allowed)`,
          )
          .join('; ') +
        '</p>',
    );
  }
  if (c.roc !== undefined) {
    lines.push('<h3>ROC curve at low false-alarm rates</h3>');
    lines.push(
      '<p class="legend">Blue: recall against false-alarm rate over all thresholds. Red dots: the lowest thresholds allowed at each stated rate (dashed), ' +
        'at the rate they reach; black square: the deployment threshold on these test images.</p>',
    );
    lines.push(rocSvg(c.roc, atRates, c.thresholds?.normal_only));
  }
  for (const [key, reason] of Object.entries(c.reasons ?? {})) lines.push(`<p class="none">${escapeHtml(key)} n/a: ${escapeHtml(reason)}</p>`);
  return lines;
}

export interface HtmlReportOptions {
  /** examples per grid; default 8 */
  readonly examples?: number;
  /** page title; default "hetmm evaluation: <dataset>" */
  readonly title?: string;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.mean td { font-weight: bold; border-top: 2px solid #888; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 1.5em; }
.card { border: 1px solid #ccc; border-radius: 4px; padding: 6px; max-width: 420px; }
.card img { width: 200px; height: auto; image-rendering: pixelated; }
.card .caption { font-size: 12px; word-break: break-all; }
.none { color: #888; }
.legend { font-size: 12px; color: #444; }
svg.roc { display: block; margin-bottom: 1em; }
`;

/**
 * Writes `<dir>/index.html` and the example images under `<dir>/images/`:
 * the metric table, then per category the worst false positives and false
 * negatives (see selectWorstExamples) with overlay and mask side by side.
 * Categories without examples get only their table row. Returns the path of
 * index.html. The page references only files it wrote (no network).
 */
export async function writeHtmlReport(
  dir: string,
  report: EvalReport,
  perCategoryExamples: Readonly<Record<string, readonly ExampleImage[]>>,
  options: HtmlReportOptions = {},
): Promise<string> {
  validateReport(report);
  const count = options.examples ?? 8;
  const title = options.title ?? `hetmm evaluation: ${report.dataset}`;
  await mkdir(path.join(dir, 'images'), { recursive: true });

  const rows = tableRows(report);
  const cellClass = (col: number) => (col === 0 ? '' : ' class="num"');
  const table = [
    '<table>',
    `<tr>${rows[0]!.map((h, col) => `<th${cellClass(col)}>${escapeHtml(h)}</th>`).join('')}</tr>`,
    ...rows.slice(1).map((r, i) => {
      const mean = i === rows.length - 2 ? ' class="mean"' : '';
      return `<tr${mean}>${r.map((v, col) => `<td${cellClass(col)}>${escapeHtml(v)}</td>`).join('')}</tr>`;
    }),
    '</table>',
  ].join('\n');

  const sections: string[] = [];
  let categoryIndex = 0;
  for (const [category, examples] of Object.entries(perCategoryExamples)) {
    // an index keeps folders distinct even when two names sanitise alike
    const folder = `${categoryIndex++}-${category.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    await mkdir(path.join(dir, 'images', folder), { recursive: true });
    const { falsePositives, falseNegatives } = selectWorstExamples(examples, count);
    const grid = async (kind: 'fp' | 'fn', list: readonly ExampleImage[]): Promise<string> => {
      if (list.length === 0) return '<p class="none">none</p>';
      const cards: string[] = [];
      for (let rank = 0; rank < list.length; rank++) {
        const ex = list[rank]!;
        const overlay = `images/${folder}/${kind}-${rank + 1}-overlay.png`;
        await writeFile(path.join(dir, overlay), ex.overlayPng);
        let maskImg = '';
        if (ex.maskPng !== undefined) {
          const mask = `images/${folder}/${kind}-${rank + 1}-mask.png`;
          await writeFile(path.join(dir, mask), ex.maskPng);
          maskImg = `<img src="${mask}" alt="ground-truth mask">`;
        }
        cards.push(
          `<div class="card"><img src="${overlay}" alt="anomaly map overlay">${maskImg}` +
            `<div class="caption">#${rank + 1} score ${ex.score.toPrecision(4)}<br><span title="${escapeHtml(ex.file)}">${escapeHtml(path.basename(ex.file))}</span></div></div>`,
        );
      }
      return `<div class="grid">\n${cards.join('\n')}\n</div>`;
    };
    const categoryReport = report.categories.find((c) => c.name === category);
    sections.push(
      [
        `<h2>${escapeHtml(category)}</h2>`,
        ...(categoryReport === undefined ? [] : categoryNotesHtml(categoryReport)),
        '<h3>Worst false positives: normal images with the highest scores</h3>',
        await grid('fp', falsePositives),
        '<h3>Worst false negatives: defective images with the lowest scores</h3>',
        await grid('fn', falseNegatives),
      ].join('\n'),
    );
  }

  const html = [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    '<p>Metrics in percent; n/a where a metric is undefined (e.g. no ground-truth masks). PRO (HETMM) is the paper\'s own PRO score; AUPRO follows MVTec AD (FPR limit 0.3).</p>',
    table,
    ...sections,
    '</body>',
    '</html>',
    '',
  ].join('\n');
  const index = path.join(dir, 'index.html');
  await writeFile(index, html, 'utf8');
  return index;
}
