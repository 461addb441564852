// The API's types: the one generated schema, openapi/schema.d.ts (npm run generate). The build (build.mjs)
// puts that file itself at dist/schema.d.ts, so the package carries it and this re-export is only the view
// from the repository.
export type { components, operations, paths } from '../../openapi/schema.js'
