/** CLI options of calibration and preset tuning, shared by fit, demo and eval. */
import type { ParseArgsConfig } from 'node:util';
import { DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE } from '../detector/calibrate.js';
import { HetmmError } from '../errors.js';
import type { TuneOptions, TuneRecord } from '../fit/tune.js';
import { intOption, numberOption } from './options.js';

export const CALIBRATION_OPTIONS = {
  calibrate: { type: 'string' },
  'no-calibrate': { type: 'boolean', default: false },
  'false-alarm-rate': { type: 'string' },
  seed: { type: 'string' },
  'tune-budget': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export interface CalibrationChoice {
  readonly calibrate: boolean;
  /** cap on leave-one-out samples */
  readonly samples: number;
  readonly falseAlarmRate: number;
  readonly tune: TuneOptions;
}

export function calibrationFromOptions(values: {
  calibrate?: string;
  'no-calibrate'?: boolean;
  'false-alarm-rate'?: string;
  seed?: string;
  'tune-budget'?: string;
}): CalibrationChoice {
  const samples = values['no-calibrate'] ? 0 : (intOption(values.calibrate, 'calibrate', 0) ?? DEFAULT_CALIBRATION_SAMPLES);
  const rate = numberOption(values['false-alarm-rate'], 'false-alarm-rate') ?? DEFAULT_FALSE_ALARM_RATE;
  if (!(rate > 0 && rate < 1)) {
    throw new HetmmError('E_ARGUMENT', `Expected --false-alarm-rate in (0, 1), e.g. 0.01 for 1%, but received "${values['false-alarm-rate']}"`);
  }
  const seed = intOption(values.seed, 'seed', 0);
  const budget = numberOption(values['tune-budget'], 'tune-budget');
  if (budget !== undefined && !(budget > 0)) throw new HetmmError('E_ARGUMENT', `Expected --tune-budget > 0 seconds but received "${values['tune-budget']}"`);
  return {
    calibrate: samples > 0,
    samples: Math.max(samples, 1),
    falseAlarmRate: rate,
    tune: { ...(seed === undefined ? {} : { seed }), ...(budget === undefined ? {} : { budgetSeconds: budget }) },
  };
}

/** `--preset tune`: choose the preset from the normal images (fit, eval). */
export function isTunePreset(preset: string | undefined): boolean {
  return preset === 'tune';
}

/** One line on a tuning: the chosen preset and its proxy scores against the default's. */
export function describeTuning(t: TuneRecord): string {
  const pct = (x: number): string => (x * 100).toFixed(1);
  const s = (p: TuneRecord['proxy']): string => `image AUROC ${pct(p.image_auroc)}, pixel AUROC ${pct(p.pixel_auroc)}, AUPRO ${pct(p.aupro)}`;
  return (
    `preset tuning chose ${t.summary} in ${t.seconds.toFixed(1)} s of its ${t.budgetSeconds} s budget (${t.candidates} candidates, ${t.windowsTried} window settings, seed ${t.seed}); ` +
    `proxy on synthetic defects: ${s(t.proxy)} (default: ${s(t.defaultProxy)})` +
    (t.bands === undefined
      ? ''
      : t.bands.weight > 0 && t.bands.proxy !== undefined && t.bands.proxyWithout !== undefined
        ? `; band cue at weight ${t.bands.weight} (with region defects: ${s(t.bands.proxy)}; without the cue: ${s(t.bands.proxyWithout)})`
        : t.bands.weights.length === 0
          ? `; band cue not tried (band structure ${t.bands.structure}: an object, not a surface)`
          : '; band cue off (it did not beat no cue on the synthetic defects)')
  );
}
