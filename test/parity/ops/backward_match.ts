/** Parity: backward template matching, per template and max over templates. */
import { checkMatchCase } from '../match-common.js';
import type { ParityChecker } from '../types.js';

const check: ParityChecker = (c) => checkMatchCase(c, 'backward');
export default check;
