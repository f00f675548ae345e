/** Assertion helpers for the errors hetmm raises on purpose. */
import assert from 'node:assert/strict';
import { HetmmError, type HetmmErrorCode } from '../../src/errors.js';

/**
 * A validator for assert.throws / assert.rejects: the error is a HetmmError
 * with `code` whose message contains every fragment.
 */
export function expectHetmm(code: HetmmErrorCode, ...fragments: string[]): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof HetmmError, `expected HetmmError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  };
}
