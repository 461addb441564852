// The baseline of `npm run bench`: Fastify with no plugins, serving constant answers of the same shape and
// size as ours. Port: first argument, else PORT, else 3001. Host: HOST, else 127.0.0.1.
import { createHash } from 'node:crypto'
import Fastify from 'fastify'

const regions = [
  { code: 'us-east-1', name: 'US East (N. Virginia)', enabled: true, location: { latitude: 38.9, longitude: -77.4 } },
  { code: 'us-east-2', name: 'US East (Ohio)', enabled: true, location: { latitude: 40, longitude: -83 } },
  { code: 'us-west-1', name: 'US West (N. California)', enabled: true, location: { latitude: 37.4, longitude: -121.9 } },
  { code: 'us-west-2', name: 'US West (Oregon)', enabled: true, location: { latitude: 45.8, longitude: -119.7 } },
  { code: 'ca-central-1', name: 'Canada (Central)', enabled: true, location: { latitude: 45.5, longitude: -73.6 } },
  { code: 'eu-west-1', name: 'Europe (Ireland)', enabled: true, location: { latitude: 53.3, longitude: -6.3 } },
  { code: 'eu-west-2', name: 'Europe (London)', enabled: true, location: { latitude: 51.5, longitude: -0.1 } },
  { code: 'eu-central-1', name: 'Europe (Frankfurt)', enabled: true, location: { latitude: 50.1, longitude: 8.7 } },
  { code: 'ap-northeast-1', name: 'Asia Pacific (Tokyo)', enabled: true, location: { latitude: 35.7, longitude: 139.7 } },
  { code: 'ap-southeast-1', name: 'Asia Pacific (Singapore)', enabled: true, location: { latitude: 1.3, longitude: 103.8 } },
  { code: 'ap-southeast-2', name: 'Asia Pacific (Sydney)', enabled: true, location: { latitude: -33.9, longitude: 151.2 } },
  { code: 'sa-east-1', name: 'South America (São Paulo)', enabled: false, location: { latitude: -23.5, longitude: -46.6 } }
]
const regionList = { items: regions }
// A constant strong validator: the body never changes, so it is hashed once rather than per response.
const regionsEtag = `"${createHash('sha1').update(JSON.stringify(regionList)).digest('base64url')}"`

const port = Number(process.argv[2] ?? process.env.PORT ?? 3001)
const host = process.env.HOST ?? '127.0.0.1'

const app = Fastify({ logger: false })

app.get('/healthz', async () => ({ status: 'ok' }))

app.get('/v1/regions', async (request, reply) => {
  reply.header('etag', regionsEtag)
  if (request.headers['if-none-match'] === regionsEtag) return reply.code(304).send()
  return regionList
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0), () => process.exit(1))
  })
}

await app.listen({ host, port })
