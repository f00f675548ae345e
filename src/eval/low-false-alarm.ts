/**
 * The low-false-alarm view of a category's test scores: recall at the
 * stated false-alarm rates (0.1%, 1%, 5%) and the ROC curve the HTML report
 * draws. A line is run at a false-alarm rate, so these say what it would
 * catch there; AUROC averages over rates no line runs at.
 */
import { recallAtFalseAlarmRate, rocCurve } from '../metrics/index.js';
import type { FalseAlarmRateReport, RocReport } from './report.js';

/** The false-alarm rates every category is reported at. */
export const REPORTED_FALSE_ALARM_RATES: readonly number[] = [0.001, 0.01, 0.05];

/**
 * Recall at REPORTED_FALSE_ALARM_RATES on the test scores (null, with its
 * reason under `at_false_alarm_rates`, without normal test images) and the
 * ROC curve (undefined without normal or without defective test images).
 */
export function lowFalseAlarmReports(
  scores: ArrayLike<number>,
  labels: readonly (0 | 1)[],
  reasons: Record<string, string>,
): { at_false_alarm_rates: FalseAlarmRateReport[] | null; roc?: RocReport } {
  const result = recallAtFalseAlarmRate(scores, labels, REPORTED_FALSE_ALARM_RATES);
  let at_false_alarm_rates: FalseAlarmRateReport[] | null = null;
  if (result.value === null) reasons['at_false_alarm_rates'] = result.reason;
  else {
    const good = labels.filter((l) => l === 0).length;
    at_false_alarm_rates = result.value.map((p) => ({
      stated_false_alarm_rate: p.rate,
      threshold: p.threshold,
      recall: p.recall,
      false_positive_rate: p.falseAlarmRate,
      false_alarms: p.falseAlarms,
      allowed_false_alarms: p.allowedFalseAlarms,
      good_images: good,
    }));
  }
  const roc = rocCurve(scores, labels);
  return roc === null
    ? { at_false_alarm_rates }
    : { at_false_alarm_rates, roc: { false_positive_rate: roc.falsePositiveRate, recall: roc.truePositiveRate } };
}
