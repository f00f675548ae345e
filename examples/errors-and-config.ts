/**
 * Errors carry stable codes; settings can be made in code instead of the
 * environment (they win over HETMM_* variables).
 */
import { configure, Detector, HetmmError, isHetmmError, setting, type HetmmErrorCode } from 'hetmm';

configure({ backend: 'reference', matchPrecision: 'float' });
console.log(`backend setting: ${setting('backend') ?? 'auto'}`);

try {
  await Detector.open({ store: 'missing.hetmm' });
} catch (e) {
  if (!isHetmmError(e)) throw e;
  const code: HetmmErrorCode = e.code;
  console.log(`${code}: ${e.message}`, e instanceof HetmmError);
}
