// OWASP API2 (broken authentication), walked from the spec: every operation that declares `security` answers
// 401 problem+json to a request without credentials and to a garbage credential of every scheme the spec
// declares (the operation's own and the others), with a body and parameters that pass validation, so it is
// the credential that is refused. Forged and stale tokens: tokens.test.ts; sign-in brute force: the failure
// throttle and the per-address limit in test/routes/sessions/sign-in.test.ts, and the burst on every
// authentication operation in api4-resource-consumption.test.ts.
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { isProblem, operations, schemes, validRequest } from './spec-walk.js'

const secured = operations.filter((op) => op.secured)

/** Garbage of each scheme: the right header, a credential that was never issued. */
const garbage: Record<string, string[]> = {
  bearer: ['Bearer garbage', 'Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', 'Basic YWRtaW46YWRtaW4=', 'bearer', ''],
  apiKey: ['garbage', 'frp_abcdefgh_' + 'A'.repeat(43), ' ', 'null']
}

t.test('security › authentication › every secured operation refuses a request without credentials, or with garbage of any scheme (401 problem+json)', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })
  t.ok(secured.length > 40, `${secured.length} secured operations`)
  const user = await given(app).signedIn()

  for (const op of secured) {
    const request = validRequest(op)
    const name = `${op.operationId} (${op.method} ${op.path})`
    // Every refusal of this operation that is not a 401 unauthorized problem.
    const wrong: string[] = []
    const expect401 = async (what: string, headers: Record<string, string>) => {
      const res = await app.inject({ ...request, headers: { ...request.headers, ...headers } })
      if (res.statusCode !== 401 || !isProblem(res) || res.json().code !== 'unauthorized') wrong.push(`${what}: ${res.statusCode} ${res.body.slice(0, 120)}`)
    }
    t.ok(op.statuses.has('401'), `${name} declares 401`)

    await expect401('no credentials', {})
    for (const [scheme, { header, bearer }] of Object.entries(schemes)) {
      for (const value of garbage[bearer ? 'bearer' : 'apiKey']!) await expect401(`${scheme} garbage ${JSON.stringify(value)}`, { [header]: value })
      // A real user's access token is no credential of another kind.
      if (!bearer) await expect401(`an access token as ${header}`, { [header]: user.accessToken })
    }
    t.same(wrong, [], `${name}: 401 without credentials and with garbage of every scheme`)
  }
})

t.test('security › authentication › operations without security are exactly the public ones the spec says', async (t) => {
  // A new public operation has to be added here on purpose: forgetting `security` would otherwise pass.
  const open = operations.filter((op) => !op.secured).map((op) => op.operationId).sort()
  t.same(open, [
    'authorizeStorageConnection', 'confirmNewsletter', 'confirmPasswordReset', 'getApp', 'getHealth', 'getJwks', 'getReadiness', 'getStatus',
    'hasuraAuth', 'hostHandshake', 'listApps', 'listPlans', 'listRegions', 'listStorageProviders', 'refreshSession',
    'requestPasswordReset', 'signIn', 'signInWithGoogle', 'signUp', 'storageCallback', 'stripeWebhook', 'subscribeNewsletter',
    'unsubscribeNewsletter', 'verifyEmail'
  ])
})
