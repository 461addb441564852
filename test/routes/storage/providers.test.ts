import t from 'tap'
import { build } from '../../helpers/build.js'
import { storageEnv, type ProviderEntry } from '../../helpers/storage-oauth.js'

const entry = (code: string, fields: Partial<ProviderEntry> = {}): ProviderEntry => ({
  code,
  name: `Name of ${code}`,
  iconUrl: `https://cdn.fractal.test/icons/${code}.svg`,
  termsUrl: `https://${code}.example.test/terms`,
  authorizeUrl: `https://${code}.example.test/authorize`,
  tokenUrl: `https://${code}.example.test/token`,
  revokeUrl: `https://${code}.example.test/revoke`,
  userInfoUrl: `https://${code}.example.test/userinfo`,
  scopes: ['files'],
  ...fields
})

t.test('listStorageProviders › valid › only providers with a client id, with code, name, icon and terms only', async (t) => {
  const app = await build(t, storageEnv([
    entry('drive', { clientId: 'drive-client', clientSecret: 'drive-secret' }),
    // Built-in client from its own variable (STORAGE_GOOGLE_DRIVE_CLIENT_ID) when the entry carries none.
    entry('google_drive'),
    // No client id anywhere: not offered.
    entry('dropbox'),
    entry('box', { clientId: 'box-client' })
  ], { STORAGE_GOOGLE_DRIVE_CLIENT_ID: 'built-in-client', STORAGE_GOOGLE_DRIVE_CLIENT_SECRET: 'built-in-secret' }))

  const res = await app.inject({ method: 'GET', url: '/v1/storage/providers' })

  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    items: [
      { code: 'drive', name: 'Name of drive', iconUrl: 'https://cdn.fractal.test/icons/drive.svg', termsUrl: 'https://drive.example.test/terms' },
      { code: 'google_drive', name: 'Name of google_drive', iconUrl: 'https://cdn.fractal.test/icons/google_drive.svg', termsUrl: 'https://google_drive.example.test/terms' },
      { code: 'box', name: 'Name of box', iconUrl: 'https://cdn.fractal.test/icons/box.svg', termsUrl: 'https://box.example.test/terms' }
    ]
  }, 'no client ids, secrets or endpoints; dropbox (no client) is left out')
  t.notMatch(res.body, /secret|client|token/i)
})

t.test('listStorageProviders › valid › the built-in list offers nothing without client ids, and Google Drive once its client is set', async (t) => {
  const bare = await build(t)
  t.same((await bare.inject({ method: 'GET', url: '/v1/storage/providers' })).json(), { items: [] })

  const app = await build(t, { STORAGE_GOOGLE_DRIVE_CLIENT_ID: 'built-in-client' })
  const res = await app.inject({ method: 'GET', url: '/v1/storage/providers' })
  t.same(res.json().items.map((p: { code: string }) => p.code), ['google_drive'])
  t.match(res.json().items[0], { name: 'Google Drive', iconUrl: /^https:\/\//, termsUrl: /^https:\/\// })
})

t.test('listStorageProviders › valid › is edge-cacheable with a strong ETag and answers 304 to If-None-Match', async (t) => {
  const app = await build(t, storageEnv([entry('drive', { clientId: 'drive-client' })]))

  const first = await app.inject({ method: 'GET', url: '/v1/storage/providers' })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['cache-control'], 'public, max-age=300, s-maxage=3600, stale-while-revalidate=300, stale-if-error=86400')
  t.equal(first.headers['cdn-cache-control'], 'max-age=3600, stale-while-revalidate=300, stale-if-error=86400')
  t.match(first.headers.vary, /Accept-Encoding/)
  t.equal(first.headers['surrogate-key'], 'storage-providers')
  const etag = first.headers.etag as string
  t.match(etag, /^"[A-Za-z0-9_-]+"$/, 'a strong validator (no W/)')

  const again = await app.inject({ method: 'GET', url: '/v1/storage/providers', headers: { 'if-none-match': etag } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')
  t.equal(again.headers.etag, etag)
  t.equal(again.headers['cache-control'], first.headers['cache-control'])

  const stale = await app.inject({ method: 'GET', url: '/v1/storage/providers', headers: { 'if-none-match': '"something-else"' } })
  t.equal(stale.statusCode, 200, 'another validator gets the list')
})
