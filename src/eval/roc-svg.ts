/**
 * The ROC curve at low false-alarm rates as inline SVG for the HTML report
 * (no script, no dependency, no network). The false-alarm axis is
 * logarithmic from 0.1% to 100%, where a line's operating points live; a
 * linear axis would squeeze them into its first pixels. Vertices below 0.1%
 * (zero false alarms) are drawn on the left edge, as the axis says.
 */

// Structural inputs (the report's RocReport, FalseAlarmRateReport and
// ThresholdReport fit them), so that report.ts can import this file without a cycle.
interface RocCurveInput {
  readonly false_positive_rate: readonly number[];
  readonly recall: readonly number[];
}
interface RatePointInput {
  readonly stated_false_alarm_rate: number;
  readonly recall: number | null;
  readonly false_positive_rate: number;
  readonly false_alarms: number;
  readonly good_images: number;
}
interface DeploymentInput {
  readonly recall: number | null;
  readonly false_positive_rate: number | null;
}

const WIDTH = 640;
const HEIGHT = 400;
const LEFT = 64;
const RIGHT = 24;
const TOP = 24;
const BOTTOM = 56;
const MIN_RATE = 0.001;

function x(rate: number): number {
  const clamped = Math.max(MIN_RATE, Math.min(1, rate));
  return LEFT + ((Math.log10(clamped) - Math.log10(MIN_RATE)) / -Math.log10(MIN_RATE)) * (WIDTH - LEFT - RIGHT);
}

function y(recall: number): number {
  return TOP + (1 - recall) * (HEIGHT - TOP - BOTTOM);
}

const fmt = (v: number): string => v.toFixed(1);
const pct = (v: number): string => `${Number((v * 100).toPrecision(3))}%`;

/**
 * The ROC curve with the operating points at the stated false-alarm rates
 * (dots at the rate reached, dashed lines at the stated rate) and the
 * deployment threshold (a square), each labelled with its recall.
 */
export function rocSvg(
  roc: RocCurveInput,
  atRates: readonly RatePointInput[] | null | undefined,
  deployment: DeploymentInput | null | undefined,
): string {
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="roc" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" ` +
      `aria-label="ROC curve at low false-alarm rates">`,
  );
  // grid and axes
  for (const r of [0.001, 0.01, 0.1, 1]) {
    parts.push(`<line x1="${fmt(x(r))}" y1="${TOP}" x2="${fmt(x(r))}" y2="${HEIGHT - BOTTOM}" stroke="#ddd"/>`);
    parts.push(`<text x="${fmt(x(r))}" y="${HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="12">${pct(r)}</text>`);
  }
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${LEFT}" y1="${fmt(y(v))}" x2="${WIDTH - RIGHT}" y2="${fmt(y(v))}" stroke="#ddd"/>`);
    parts.push(`<text x="${LEFT - 6}" y="${fmt(y(v) + 4)}" text-anchor="end" font-size="12">${pct(v)}</text>`);
  }
  parts.push(`<rect x="${LEFT}" y="${TOP}" width="${WIDTH - LEFT - RIGHT}" height="${HEIGHT - TOP - BOTTOM}" fill="none" stroke="#888"/>`);
  parts.push(
    `<text x="${(LEFT + WIDTH - RIGHT) / 2}" y="${HEIGHT - 14}" text-anchor="middle" font-size="12">` +
      `false-alarm rate on the good test images (log scale; below 0.1% drawn at the left edge)</text>`,
  );
  parts.push(
    `<text transform="translate(16 ${(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" text-anchor="middle" font-size="12">recall (defective test images found)</text>`,
  );
  // the curve
  const points = roc.false_positive_rate.map((f, i) => `${fmt(x(f))},${fmt(y(roc.recall[i]!))}`).join(' ');
  parts.push(`<polyline points="${points}" fill="none" stroke="#1f5fa8" stroke-width="2"/>`);
  // operating points at the stated rates
  for (const p of atRates ?? []) {
    if (p.recall === null) continue;
    const sx = fmt(x(p.stated_false_alarm_rate));
    parts.push(`<line x1="${sx}" y1="${TOP}" x2="${sx}" y2="${HEIGHT - BOTTOM}" stroke="#c0392b" stroke-dasharray="4 3"/>`);
    const px = x(p.false_positive_rate);
    const py = y(p.recall);
    parts.push(
      `<circle cx="${fmt(px)}" cy="${fmt(py)}" r="5" fill="#c0392b"><title>at most ${pct(p.stated_false_alarm_rate)} false alarms: ` +
        `recall ${pct(p.recall)}, ${p.false_alarms} of ${p.good_images} good images flagged</title></circle>`,
    );
    // above the dot (below it near the top), so the label never sits on the axis ticks
    const ly = py - 10 < TOP + 12 ? py + 18 : py - 10;
    parts.push(`<text x="${fmt(px + 7)}" y="${fmt(ly)}" font-size="12" fill="#c0392b">${pct(p.stated_false_alarm_rate)}: recall ${pct(p.recall)}</text>`);
  }
  // the deployment threshold
  if (deployment !== null && deployment !== undefined && deployment.recall !== null && deployment.false_positive_rate !== null) {
    const px = x(deployment.false_positive_rate);
    const py = y(deployment.recall);
    parts.push(
      `<rect x="${fmt(px - 6)}" y="${fmt(py - 6)}" width="12" height="12" fill="none" stroke="#111" stroke-width="2">` +
        `<title>deployment threshold: recall ${pct(deployment.recall)}, false alarms ${pct(deployment.false_positive_rate)}</title></rect>`,
    );
    parts.push(`<text x="${fmt(px + 9)}" y="${fmt(py - 26 < TOP + 12 ? py + 34 : py - 26)}" font-size="12">deployment: recall ${pct(deployment.recall)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}
