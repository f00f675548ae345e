import { HetmmError } from '../../errors.js';
import { DEFAULT_CALIBRATION_IMAGES, parseCalibrationMethod, quantizeModel } from '../../backbone/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { intOption, parse } from '../options.js';
import { checkOutputFile } from '../outputs.js';
import { descriptionPathFor } from '../../backbone/description.js';

export const QUANTIZE_MODEL_USAGE = `usage: hetmm quantize-model --calibrate DIR|FILES... -o OUT.onnx [options]

Writes an int8 version of a float32 ONNX backbone (static post-training
quantisation, QDQ format that onnxruntime runs as QLinearConv): batch-norms
folded into convolutions, per-channel int8 weights with bias correction,
uint8 activations calibrated on the given normal images (use the images you
fit), ImageNet normalisation moved into the graph, symbolic batch. The stem
(the convolution that reads the image and the two that read its pooled
output) stays float: it made two thirds of the int8 error and is no faster
in int8 (docs/PERFORMANCE.md). OUT.json (its
description) is written beside it. Stores built with OUT.onnx are not
interchangeable with stores of the float model.

options:
  --model PATH          float32 model (default: HETMM_MODEL, then the shipped ResNet50)
  --calibrate DIR       normal images (a directory, or image files as positionals)
  -o, --output PATH     the int8 .onnx to write
  --calibration M       minmax | mse | percentile:P (default mse)
  --max-images N        calibrate on at most N evenly spaced images (default ${DEFAULT_CALIBRATION_IMAGES})
  --threads N           onnxruntime threads
  --json                one JSON object on stdout`;

export async function quantizeModelCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      model: { type: 'string' },
      calibrate: { type: 'string', multiple: true },
      output: { type: 'string', short: 'o' },
      calibration: { type: 'string' },
      'max-images': { type: 'string' },
      threads: { type: 'string' },
      quiet: { type: 'boolean', short: 'q', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    QUANTIZE_MODEL_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${QUANTIZE_MODEL_USAGE}\n`);
    return 0;
  }
  const calibrate = [...(values.calibrate ?? []), ...positionals];
  if (calibrate.length === 0) throw new HetmmError('E_ARGUMENT', `quantize-model needs --calibrate DIR\n${QUANTIZE_MODEL_USAGE}`);
  if (values.output === undefined) throw new HetmmError('E_ARGUMENT', `quantize-model needs -o OUT.onnx\n${QUANTIZE_MODEL_USAGE}`);
  const report = new Reporter(ctx, values);
  // both outputs checked before the minutes of calibration
  await checkOutputFile(values.output);
  await checkOutputFile(descriptionPathFor(values.output));
  const started = performance.now();
  const r = await quantizeModel({
    model: values.model,
    calibrate,
    output: values.output,
    method: values.calibration === undefined ? undefined : parseCalibrationMethod(values.calibration),
    maxImages: intOption(values['max-images'], 'max-images'),
    threads: intOption(values.threads, 'threads'),
  });
  const seconds = (performance.now() - started) / 1000;
  report.record({ ...r, seconds });
  report.out(`${r.output}  (${(r.bytes / 2 ** 20).toFixed(1)} MiB, sha256 ${r.sha256.slice(0, 16)}…)`);
  report.out(`  description  ${r.descriptionPath} (${r.description.name})`);
  report.out(`  folded       ${r.foldedBatchNorms} batch-norms into convolutions`);
  report.out(`  quantised    ${r.quantizedConvs} convolutions, ${r.quantizedActivations} activation tensors (${r.absorbedRelus} ReLUs absorbed, ${r.biasCorrected} biases corrected); ${r.floatConvs} stem convolutions left float`);
  report.out(`  calibration  ${typeof r.method === 'string' ? r.method : `percentile ${r.method.percentile}`} on ${r.calibrationImages} images, ${seconds.toFixed(1)} s`);
  return 0;
}
