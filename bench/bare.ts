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

// The assignment bench's baseline: a constant 201 with a container of the same shape as ours.
const assigned = {
  id: '9b2f3c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e',
  userId: '1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d',
  app: 'chrome',
  region: 'us-east-1',
  state: 'in_use',
  dpi: 96,
  useStun: false,
  createdAt: '2026-11-27T00:00:00.000Z',
  failureReason: null,
  connection: { ip: '198.51.100.1', ports: { tcp32262: 40000, udp32263: 40001, tcp32273: 40002 }, aesKey: '00112233445566778899aabbccddeeff' }
}
app.post('/v1/containers', async (_request, reply) => reply.code(201).send(assigned))
app.post('/v1/hosts/:id/heartbeats', async (_request, reply) => reply.code(204).send())
const logAccepted = { id: '9b2f3c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e', sender: 'client', userId: null, containerId: null, bytes: 400, status: 'pending', createdAt: '2026-11-27T00:00:00.000Z', storedAt: null, downloadUrl: null }
app.post('/v1/logs', async (_request, reply) => reply.code(202).send(logAccepted))

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0), () => process.exit(1))
  })
}

await app.listen({ host, port })
