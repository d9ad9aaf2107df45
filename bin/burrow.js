#!/usr/bin/env node
// Entry point for `npx burrow`: runs the TypeScript CLI through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../cmd/burrow.ts');
