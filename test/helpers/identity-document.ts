// EC2 instance identity documents, signed for tests as AWS does: the JSON the instance metadata service serves
// at /latest/dynamic/instance-identity/document, and its base64 RSA-SHA256 signature (/signature, checked
// against the region's RSA certificate: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/verify-iid.html).
// The fields are those of https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-identity-documents.html
// (pendingTime: the launch; privateIp: the instance's private address).
import { createSign, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'

// A self-signed X.509 certificate standing in for AWS's: node:crypto reads certificates but does not make
// them, so the few DER structures a certificate needs are written here and its TBS part signed for real.
function der (tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  const n = body.length
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  return Buffer.concat([Buffer.from([tag, ...length]), body])
}
const sequence = (...parts: Buffer[]) => der(0x30, ...parts)
const oid = (hex: string) => der(0x06, Buffer.from(hex, 'hex'))
const sha256WithRsa = sequence(oid('2a864886f70d01010b'), der(0x05))
const commonName = (cn: string) => sequence(der(0x31, sequence(oid('550403'), der(0x0c, Buffer.from(cn)))))
const utcTime = (d: Date) => der(0x17, Buffer.from(`${d.toISOString().replace(/[-:T]/g, '').slice(2, 14)}Z`))

/** A certificate (PEM, what AWS_IDENTITY_CERT takes) and the private key that signs documents under it. */
export function identityAuthority (cn: string): { certificate: string, privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const now = Date.now()
  const tbs = sequence(
    der(0xa0, der(0x02, Buffer.from([2]))), // v3
    der(0x02, Buffer.from(randomBytes(8).map((b, i) => (i === 0 ? b & 0x7f : b)))), // a positive serial
    sha256WithRsa,
    commonName(cn),
    sequence(utcTime(new Date(now - 3_600_000)), utcTime(new Date(now + 86_400_000))),
    commonName(cn),
    publicKey.export({ type: 'spki', format: 'der' }))
  const certificate = sequence(tbs, sha256WithRsa, der(0x03, Buffer.from([0]), sign('sha256', tbs, privateKey)))
  const pem = `-----BEGIN CERTIFICATE-----\n${certificate.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`
  return { certificate: pem, privateKey }
}

export const signDocument = (document: string, key: KeyObject) => createSign('RSA-SHA256').update(document).sign(key, 'base64')

export interface DocumentFields {
  instanceId: string
  region: string
  /** The launch (default: now). */
  pendingTime?: Date
  /** The instance's private address (default 10.0.12.34). */
  privateIp?: string
}

/** The document as the metadata service serves it (pretty-printed JSON). */
export const identityDocument = (fields: DocumentFields) => JSON.stringify({
  accountId: '000000000000',
  architecture: 'x86_64',
  availabilityZone: `${fields.region.replace(/-1$/, '-1a')}`,
  imageId: 'ami-0abcdef1234567890',
  instanceId: fields.instanceId,
  instanceType: 'g4dn.xlarge',
  pendingTime: (fields.pendingTime ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  privateIp: fields.privateIp ?? '10.0.12.34',
  region: fields.region,
  version: '2017-09-30'
}, null, 2)

/** The handshake body fields of a document signed by `key`. */
export function signedIdentity (fields: DocumentFields, key: KeyObject) {
  const document = identityDocument(fields)
  return { identityDocument: document, identitySignature: signDocument(document, key) }
}
