import { fileURLToPath } from 'node:url'

/** Where the contract lives (next to this file, in the source tree and in dist/). */
export const specPath = fileURLToPath(new URL('./openapi.yaml', import.meta.url))
