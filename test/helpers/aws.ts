// The settings CLOUD_PROVIDER=aws cannot start without (plugins/config.ts, awsSettingsMissing), for the tests
// that run the app on AWS (an SDK-boundary model, the HTTP stand-in, or moto). Each test adds its own on top.
import { generateKeyPairSync } from 'node:crypto'
import type { Overrides } from './build.js'

// AWS_IDENTITY_CERT must read as a public key (the hosts feature, routes/hosts/feature.ts, checks it); handshake tests sign with their own.
const identityKey = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })

export const testPublicUrl = 'https://api.fractal.test'
export const testInstanceProfile = 'fractal-host'
export const testSecurityGroups = ['sg-0f0a0c7a1b0575e1', 'sg-0f0a0c7a1c11e475']

/** CLOUD_PROVIDER=aws with every setting it needs: hosts shake hands with their identity document. */
export const awsSettings = {
  CLOUD_PROVIDER: 'aws',
  PUBLIC_URL: testPublicUrl,
  FLEET_INSTANCE_PROFILE: testInstanceProfile,
  FLEET_SECURITY_GROUPS: testSecurityGroups.join(','),
  FLEET_PUBLIC_IP: 'true',
  HOST_HANDSHAKE: 'identity-document',
  AWS_IDENTITY_CERT: identityKey.publicKey
} satisfies Overrides
