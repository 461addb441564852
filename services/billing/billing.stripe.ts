import type Stripe from 'stripe'

/**
 * The real Stripe client, pointed at `stripeApiUrl` when set (a stand-in in tests); null without a secret key.
 * The Stripe SDK loads only when billing is configured.
 */
export async function createStripeClient (settings: { stripeSecretKey: string | null, stripeApiUrl: string | null }): Promise<Stripe | null> {
  if (!settings.stripeSecretKey) return null
  const api = settings.stripeApiUrl ? new URL(settings.stripeApiUrl) : null
  const { default: StripeClient } = await import('stripe')
  return new StripeClient(settings.stripeSecretKey, {
    maxNetworkRetries: 2,
    timeout: 10_000,
    ...(api ? { host: api.hostname, port: Number(api.port || (api.protocol === 'https:' ? 443 : 80)), protocol: api.protocol.replace(':', '') as 'http' | 'https' } : {})
  })
}
