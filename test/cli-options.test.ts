/**
 * The CLI's preset options follow the backbone description (issue 22,
 * item 8): one `--layerN` per feature layer (FEATURE_LAYERS), each applied
 * to its layer, none beyond the count.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FEATURE_LAYERS } from '../src/backbone/description.js';
import { LAYER_OPTION_NAMES, parse, PRESET_OPTIONS, presetFromOptions } from '../src/cli/options.js';
import { isHetmmError } from '../src/errors.js';

test('one --layerN option per feature layer of the backbone description', () => {
  assert.deepEqual(LAYER_OPTION_NAMES, Array.from({ length: FEATURE_LAYERS }, (_, i) => `layer${i + 1}`));
  for (const name of LAYER_OPTION_NAMES) assert.deepEqual((PRESET_OPTIONS as Record<string, unknown>)[name], { type: 'string' }, name);
  assert.equal((PRESET_OPTIONS as Record<string, unknown>)[`layer${FEATURE_LAYERS + 1}`], undefined);
});

test('each --layerN overrides its own layer of the preset; one past the count is a usage error', () => {
  const last = `--layer${FEATURE_LAYERS}`;
  const { values } = parse([last, '9x3,0.5,1'], PRESET_OPTIONS, 'usage');
  const base = presetFromOptions({}, 'default')!;
  const preset = presetFromOptions(values, 'default')!;
  assert.deepEqual(preset.layers.slice(0, -1), base.layers.slice(0, -1));
  assert.deepEqual(
    { ...preset.layers.at(-1)! },
    { ...base.layers.at(-1)!, forwardPatch: 9, backwardPatch: 3, alpha: 0.5, lambda: 1 },
  );
  assert.throws(() => presetFromOptions(parse([last, '12x3,0.5,1'], PRESET_OPTIONS, 'usage').values, 'default'), (e: unknown) => isHetmmError(e) && e.message.includes(last));
  assert.throws(() => parse([`--layer${FEATURE_LAYERS + 1}`, '9x3,0.5,1'], PRESET_OPTIONS, 'usage'), (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT');
});
