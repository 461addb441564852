// Tells the edge (CDN or Varnish) to forget representations by tag (the Surrogate-Key / xkey headers the
// edge-cache plugin sets). A purge that fails throws: the purge job retries it with backoff.

export interface Purger {
  readonly kind: 'none' | 'varnish' | 'fastly' | 'cloudflare'
  /** Forgets every representation carrying any of these tags. */
  purge (tags: readonly string[]): Promise<void>
  /** Forgets everything this service put in the cache. */
  purgeAll (): Promise<void>
}

export interface PurgerConfig {
  kind: Purger['kind']
  /** varnish: the Varnish hosts' base URLs (each gets the purge). */
  varnishUrls: readonly string[]
  fastly: { apiUrl: string, token: string | null, serviceId: string | null }
  cloudflare: { apiUrl: string, token: string | null, zoneId: string | null }
  timeoutMs: number
}

type Log = { info: (obj: object, msg: string) => void }

/** Fastly takes up to 256 surrogate keys per purge; Cloudflare up to 30 tags per call on every plan. */
const fastlyBatch = 256
const cloudflareBatch = 30

const chunks = <T>(items: readonly T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size))

async function call (url: string, init: RequestInit, timeoutMs: number, what: string): Promise<void> {
  let res: Response
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    throw new Error(`${what}: ${url} unreachable (${(err as Error).message})`, { cause: err })
  }
  const text = await res.text()
  if (!res.ok) throw new Error(`${what}: ${url} answered ${res.status} ${text.slice(0, 200)}`)
  // Cloudflare answers 200 with success: false on some failures.
  if (text.startsWith('{') && (JSON.parse(text) as { success?: boolean }).success === false) throw new Error(`${what}: ${url} refused: ${text.slice(0, 200)}`)
}

export function createPurger (config: PurgerConfig, log: Log): Purger {
  switch (config.kind) {
    case 'varnish': return varnishPurger(config)
    case 'fastly': return fastlyPurger(config)
    case 'cloudflare': return cloudflarePurger(config)
    default: return createNonePurger(log)
  }
}

/** No edge in front (or one that only expires): the request is logged, nothing is sent. */
export function createNonePurger (log: Log): Purger {
  return {
    kind: 'none',
    async purge (tags) { log.info({ tags }, 'cache purge (no purger configured)') },
    async purgeAll () { log.info({}, 'cache purge of everything (no purger configured)') }
  }
}

/**
 * Varnish with varnish-modules' xkey (deploy/varnish/default.vcl): `PURGE /` with the tags in `xkey-purge`
 * forgets the objects carrying them; `PURGE /` with `x-purge-all: 1` bans everything. Sent to every host.
 */
function varnishPurger (config: PurgerConfig): Purger {
  if (config.varnishUrls.length === 0) throw new Error('CACHE_PURGER=varnish needs VARNISH_PURGE_URLS')
  const each = (headers: Record<string, string>) => Promise.all(config.varnishUrls.map((base) =>
    call(new URL('/', base).href, { method: 'PURGE', headers }, config.timeoutMs, 'varnish purge')))
  return {
    kind: 'varnish',
    async purge (tags) {
      // One header of a few hundred tags at most per request (Varnish's default header limit is 8 KB).
      for (const batch of chunks(tags, 200)) await each({ 'xkey-purge': batch.join(' ') })
    },
    async purgeAll () { await each({ 'x-purge-all': '1' }) }
  }
}

/** Fastly's purge API: surrogate keys in batches (POST /service/{id}/purge), or purge_all. */
function fastlyPurger (config: PurgerConfig): Purger {
  const { apiUrl, token, serviceId } = config.fastly
  if (!token || !serviceId) throw new Error('CACHE_PURGER=fastly needs FASTLY_API_TOKEN and FASTLY_SERVICE_ID')
  const base = `${apiUrl.replace(/\/$/, '')}/service/${encodeURIComponent(serviceId)}`
  const headers = { 'fastly-key': token, accept: 'application/json' }
  return {
    kind: 'fastly',
    async purge (tags) {
      for (const batch of chunks(tags, fastlyBatch)) {
        await call(`${base}/purge`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ surrogate_keys: batch }) }, config.timeoutMs, 'fastly purge')
      }
    },
    async purgeAll () { await call(`${base}/purge_all`, { method: 'POST', headers }, config.timeoutMs, 'fastly purge_all') }
  }
}

/** Cloudflare's purge by cache tag (the edge-cache plugin sends `Cache-Tag` when CACHE_PURGER=cloudflare). */
function cloudflarePurger (config: PurgerConfig): Purger {
  const { apiUrl, token, zoneId } = config.cloudflare
  if (!token || !zoneId) throw new Error('CACHE_PURGER=cloudflare needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ZONE_ID')
  const url = `${apiUrl.replace(/\/$/, '')}/zones/${encodeURIComponent(zoneId)}/purge_cache`
  const send = (body: object) => call(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body)
  }, config.timeoutMs, 'cloudflare purge')
  return {
    kind: 'cloudflare',
    async purge (tags) { for (const batch of chunks(tags, cloudflareBatch)) await send({ tags: batch }) },
    async purgeAll () { await send({ purge_everything: true }) }
  }
}
