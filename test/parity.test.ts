/**
 * The parity fixtures as a node:test suite (so `npm test` includes parity):
 * one subtest per case of every op with a checker; ops without a checker are
 * reported as todo ("pending"), visibly, never as passed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { groupByOp, loadCases, loadChecker } from './parity/load.js';
import { parityDir } from './parity/util.js';

const dir = parityDir();
const groups = groupByOp(await loadCases(dir));

test('parity fixtures are present', () => {
  assert.ok(groups.size > 0, `no *.json parity cases found in ${dir}`);
});

for (const [op, cases] of groups) {
  const check = await loadChecker(op).catch((e: unknown) => e as Error);
  if (check === undefined) {
    test(`parity ${op}`, { todo: `pending (no implementation yet): no test/parity/ops/${op}.ts, ${cases.length} cases` }, () => {});
    continue;
  }
  test(`parity ${op}`, async (t) => {
    if (check instanceof Error) assert.fail(`checker for ${op} failed to load: ${check.message}`);
    for (const c of cases) {
      await t.test(c.file, async () => {
        const r = await check(c);
        assert.ok(r.ok, `${c.file}: ${r.detail ?? 'failed'} (max error ${r.maxError})`);
      });
    }
  });
}
