// Logs through S3 on moto (issue 19): a log uploaded by its user is stored by the worker in the bucket, and
// the presigned URL GET /v1/logs gives downloads it with a plain fetch(). The bucket is this file's alone
// (a unique name in ap-northeast-1; test/helpers/moto.ts). moto does not verify request signatures, so a
// tampered URL would download here too: only that the URL works is shown.
import { randomBytes } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { moto } from '../helpers/moto.js'
import { until } from '../helpers/wait.js'

const region = 'ap-northeast-1'
const server = await moto()
if (server.skip) t.comment(server.skip)

t.test('uploadLog › valid › on moto: stored in S3 under its user and container; listMyLogs presigns a URL that downloads it', { skip: server.skip }, async (t) => {
  const bucket = `fractal-logs-${randomBytes(6).toString('hex')}`
  const s3 = new S3Client({ region, endpoint: server.url!, forcePathStyle: true })
  await s3.send(new CreateBucketCommand({ Bucket: bucket, CreateBucketConfiguration: { LocationConstraint: region } }))
  const app = await build(t, { LOG_BUCKET: bucket, LOG_S3_REGION: region, LOG_S3_ENDPOINT: server.url!, LOG_S3_FORCE_PATH_STYLE: 'true' })
  const { user, container } = await given(app).assignedContainer()
  const text = `[client] session started\n${'frame dropped\n'.repeat(100)}[client] bye\n`

  const res = await app.inject({ method: 'POST', url: '/v1/logs', query: { sender: 'client', containerId: container.id }, payload: text, headers: { ...user.headers, 'content-type': 'text/plain' } })

  t.equal(res.statusCode, 202, res.body)
  app.queue.startWorker(1)
  const row = () => app.db.selectFrom('log_upload').selectAll().where('id', '=', res.json().id).executeTakeFirstOrThrow()
  t.ok(await until(async () => (await row()).status === 'stored'), 'the worker stores it')
  const key = (await row()).object_key!
  t.match(key, new RegExp(`^logs/${user.account.id}/${container.id}/client-[^/]+\\.txt\\.gz$`))
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  t.equal(gunzipSync(Buffer.from(await object.Body!.transformToByteArray())).toString('utf8'), text, 'the object is the gzipped log')

  const listed = await app.inject({ method: 'GET', url: '/v1/logs', headers: user.headers })
  const [log] = listed.json().items as Array<{ downloadUrl: string }>
  const url = new URL(log!.downloadUrl)
  t.equal(url.origin, server.url, 'presigned against the bucket\'s endpoint')
  t.match(url.searchParams.get('X-Amz-Expires'), '900')
  const download = await fetch(url)
  t.equal(download.status, 200)
  t.equal(gunzipSync(Buffer.from(await download.arrayBuffer())).toString('utf8'), text, 'plain fetch() downloads the log')
})
