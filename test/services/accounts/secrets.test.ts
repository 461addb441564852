import t from 'tap'

t.test('verifyPassword › security › an unknown address costs the same argon2 verification as a wrong password', async (t) => {
  const verified: string[] = []
  const secrets = await t.mockImport<typeof import('../../../services/accounts/secrets.js')>('../../../services/accounts/secrets.js', {
    '@node-rs/argon2': {
      hash: async () => '$argon2id$v=19$m=19456,t=2,p=1$dummy',
      verify: async (hash: string) => { verified.push(hash); return true }
    }
  })
  t.equal(await secrets.verifyPassword(null, 'guess'), false, 'no account never signs in, even if the dummy matched')
  t.equal(await secrets.verifyPassword('$argon2id$v=19$real', 'guess'), true)
  t.same(verified, ['$argon2id$v=19$m=19456,t=2,p=1$dummy', '$argon2id$v=19$real'], 'one verification on each path')
})

t.test('passwordProblem › invalid input › too short, common, or the address itself', async (t) => {
  const { passwordProblem } = await import('../../../services/accounts/secrets.js')
  t.equal(await passwordProblem('short', 10), 'must be at least 10 characters')
  t.equal(await passwordProblem('password123', 10), 'is one of the most common passwords')
  t.equal(await passwordProblem('PASSWORD123', 10), 'is one of the most common passwords', 'case does not help')
  t.equal(await passwordProblem('margaret-is-here', 10, 'margaret@example.test'), 'must not contain your e-mail address')
  t.equal(await passwordProblem('violet-tundra-kettle', 10, 'ada@example.test'), null)
})
