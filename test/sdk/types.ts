// Compile-only checks of the SDK's public types (run by `tsc --noEmit`, which test/contract/spec.test.ts runs):
// each @ts-expect-error must stay an error, or the build fails.
import { createFractalClient, unwrap, type components, type ItemOf, type PagedPath } from '../../sdk/src/index.js'

type App = components['schemas']['App']
type Container = components['schemas']['Container']

const client = createFractalClient({ baseUrl: 'http://127.0.0.1:1' })

export async function idempotencyKeyIsOptional () {
  // The client generates the key that the spec requires.
  const { data } = await client.POST('/v1/containers', { body: { app: 'chrome' } })
  await client.POST('/v1/containers', { body: { app: 'chrome' }, params: { header: { 'Idempotency-Key': 'mine-123456' } } })
  // @ts-expect-error the body is still checked: `app` is required
  await client.POST('/v1/containers', { body: { region: 'us-east-1' } })
  return data
}

export async function paginateIsTypedByPath () {
  const apps: App[] = []
  for await (const app of client.paginate('/v1/apps', { params: { query: { limit: 50, region: 'eu-west-1' } } })) apps.push(app)
  const containers: Array<ItemOf<'/v1/containers'>> = []
  for await (const container of client.paginate('/v1/containers', { params: { query: { state: 'in_use' } } })) containers.push(container satisfies Container)
  // @ts-expect-error the regions list is not paginated
  client.paginate('/v1/regions')
  // @ts-expect-error the cursor is the helper's business
  client.paginate('/v1/apps', { params: { query: { cursor: 'abc' } } })
  // @ts-expect-error `limit` is a number
  client.paginate('/v1/apps', { params: { query: { limit: '5' } } })
  const paged: PagedPath[] = ['/v1/apps', '/v1/containers', '/v1/admin/users']
  return { apps, containers, paged }
}

export async function unwrapGivesTheSuccessBody () {
  const me = unwrap(await client.GET('/v1/users/me'))
  const email: string = me.email
  // @ts-expect-error a User has no password
  const password: string = me.password
  const job = await client.waitForJob('id')
  const state: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' = job.state
  return { email, password, state }
}
