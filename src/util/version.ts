import { readFileSync } from 'node:fs';

/** burrow's version, from package.json (burrow --version, /metrics burrow_info, status). */
export function burrowVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
