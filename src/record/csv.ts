/**
 * CSV export of the record (RFC 4180: comma, CRLF, quotes doubled), safe to
 * open in a spreadsheet: a cell starting with = + - @ (or a tab or carriage
 * return) is prefixed with ' so it is never taken as a formula (CSV
 * injection: an image name is the client's text). Scores are numbers and
 * are written as such (a negative number is not a formula).
 */
import type { Inspection } from './record.js';

export const CSV_COLUMNS = ['id', 'line', 'time', 'score', 'verdict', 'threshold', 'store_version', 'image_name', 'image_expired'] as const;

export function csvCell(value: string | number | boolean | null): string {
  if (value === null) return '';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  let text = value;
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvRow(i: Inspection): string {
  return [i.id, i.line, i.time, i.score, i.verdict, i.threshold, i.storeVersion, i.imageName, i.imageExpired].map(csvCell).join(',') + '\r\n';
}

/** The header and one line per inspection, as they come (streamed: nothing is held in memory). */
export async function* csvLines(inspections: AsyncIterable<Inspection>): AsyncIterable<string> {
  yield CSV_COLUMNS.join(',') + '\r\n';
  for await (const i of inspections) yield csvRow(i);
}
