/**
 * What a simulated run may use. Every feature is on by default; `--without` turns some off and
 * `--features` names the only ones on, so a failing seed can be narrowed to the feature at fault.
 */
export const allFeatures = [
  // schemas
  'nocase', 'untyped', 'composite', 'without-rowid', 'rowid', 'unique',
  // values
  'nulls', 'non-utf8', 'blobs', 'neg-zero',
  // operations
  'replace', 'pk-change', 'add-column', 'late-create', 'transactions', 'ddl',
  // faults
  'reorder', 'duplicate', 'drop', 'restart', 'skew', 'down', 'wipe',
] as const;

export type Feature = (typeof allFeatures)[number];

export type Features = ReadonlySet<Feature>;

export function parseFeatures(list: string, what: string): Feature[] {
  const out: Feature[] = [];
  for (const raw of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(allFeatures as readonly string[]).includes(raw)) {
      throw new Error(`${what}: unknown feature "${raw}" (known: ${allFeatures.join(', ')})`);
    }
    out.push(raw as Feature);
  }
  return out;
}

export function featureSet(only: readonly Feature[] | null, without: readonly Feature[]): Set<Feature> {
  const s = new Set<Feature>(only ?? allFeatures);
  for (const f of without) s.delete(f);
  return s;
}
