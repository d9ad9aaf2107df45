import { Packr } from 'msgpackr';

/**
 * One message of the schema stream = one schema entry: the schema changes one node committed
 * (seen as a diff of sqlite_schema), or statements `burrow migrate` runs everywhere. Entries are
 * folded in stream order on every node (apply/schema-applier.ts).
 */
export const schemaEntryVersion = 1;

export type SchemaObjectType = 'table' | 'index' | 'view' | 'trigger';

/** One object's transition: its definition before (null: absent) and after (null: dropped). */
export interface SchemaOp {
  readonly type: SchemaObjectType;
  readonly name: string;
  /** The table the object belongs to (its own name for tables and views). */
  readonly tbl: string;
  readonly from: string | null;
  readonly to: string | null;
  /** A table renamed: its name before (same rootpage); `from` is that table's definition. */
  readonly renamedFrom?: string;
}

export interface SchemaEntry {
  readonly v: number;
  /** Origin node id. */
  readonly o: string;
  /** The origin's entry number (1, 2, 3 …): data batches name the last one they need. */
  readonly n: number;
  readonly ops: readonly SchemaOp[];
  /** The schema stream position its origin had folded when it made these changes (renames after it were unseen there). */
  readonly q?: number;
  /** `burrow migrate`: statements every node runs as written, in stream order. */
  readonly sql?: string;
}

export class MalformedSchemaEntryError extends Error {
  override name = 'MalformedSchemaEntryError';
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Packr>[0]);
const types = new Set<string>(['table', 'index', 'view', 'trigger']);
const strOrNull = (x: unknown) => x === null || typeof x === 'string';

export function encodeSchemaEntry(e: SchemaEntry): Buffer {
  return packr.pack(e);
}

/** Decode and validate; anything off → MalformedSchemaEntryError naming the problem. */
export function decodeSchemaEntry(data: Uint8Array): SchemaEntry {
  let e: unknown;
  try {
    e = packr.unpack(data);
  } catch (err) {
    throw new MalformedSchemaEntryError(`not msgpack: ${(err as Error).message}`);
  }
  if (typeof e !== 'object' || e === null) throw new MalformedSchemaEntryError('not a schema entry');
  const o = e as Record<string, unknown>;
  if (o.v !== schemaEntryVersion) throw new MalformedSchemaEntryError(`unsupported schema entry version ${String(o.v)} (this node speaks ${schemaEntryVersion})`);
  if (typeof o.o !== 'string' || o.o.length === 0) throw new MalformedSchemaEntryError('missing origin node id');
  if (typeof o.n !== 'number' || !Number.isSafeInteger(o.n) || o.n < 1) throw new MalformedSchemaEntryError('bad entry number');
  if (!Array.isArray(o.ops)) throw new MalformedSchemaEntryError('missing ops');
  if (o.sql !== undefined && typeof o.sql !== 'string') throw new MalformedSchemaEntryError('sql is not text');
  if (o.q !== undefined && (typeof o.q !== 'number' || !Number.isSafeInteger(o.q) || o.q < 0)) throw new MalformedSchemaEntryError('bad schema position q');
  for (const [i, op] of (o.ops as unknown[]).entries()) {
    const p = op as Record<string, unknown>;
    if (typeof op !== 'object' || op === null || !types.has(p.type as string) || typeof p.name !== 'string' || typeof p.tbl !== 'string'
      || !strOrNull(p.from) || !strOrNull(p.to) || (p.renamedFrom !== undefined && typeof p.renamedFrom !== 'string')) {
      throw new MalformedSchemaEntryError(`ops[${i}] is malformed`);
    }
  }
  return o as unknown as SchemaEntry;
}
