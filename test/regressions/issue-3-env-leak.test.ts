// Broke: env-schema merged process.env into the environment given to loadConfig, so CI's REDIS_URL
// turned the embedded-defaults tests into Redis tests.
import t from 'tap'
import { loadConfig } from '../../plugins/config.js'

t.test('loadConfig › reads only the environment it is given', async (t) => {
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = 'redis://127.0.0.1:6379'
  t.teardown(() => { if (saved === undefined) delete process.env.REDIS_URL; else process.env.REDIS_URL = saved })
  t.equal(loadConfig({}).redis.url, null)
})
