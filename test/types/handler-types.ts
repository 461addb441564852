// Compile-only checks of Handler<> (run by `tsc --noEmit`, which test/contract/spec.test.ts runs):
// each @ts-expect-error must stay an error, or the build fails.
import type { Handler, Handlers } from '../../openapi/handler-types.js'

export const goodGetApp: Handler<'getApp'> = async (request) => {
  const id: string = request.params.appId
  return { id, name: 'x', description: 'x', iconUrl: 'https://x.test/x.svg', category: 'browser', regions: [], plans: [] }
}

// @ts-expect-error a wrong response shape (missing fields) does not compile
export const missingFields: Handler<'getApp'> = async () => ({ id: 'chrome' })

// @ts-expect-error an unknown enum value does not compile
export const wrongEnum: Handler<'getApp'> = async () => ({ id: 'x', name: 'x', description: 'x', iconUrl: 'x', category: 'games', regions: [], plans: [] })

export const wrongParam: Handler<'getApp'> = async (request) => {
  // @ts-expect-error getApp has no query parameter `region`
  const region: string = request.query.region
  return { id: 'x', name: 'x', description: 'x', iconUrl: 'x', category: 'browser', regions: [region], plans: [] }
}

export const typedBody: Handler<'updateRegion'> = async (request) => {
  const enabled: boolean | undefined = request.body.enabled
  // @ts-expect-error the body has no `current_ami`
  const ami: string = request.body.current_ami
  return { code: ami, name: 'x', enabled: enabled ?? true, location: { latitude: 0, longitude: 0 } }
}

// @ts-expect-error a tag's handler map must cover all its operations
export const incomplete: Handlers<'catalog'> = { getApp: goodGetApp }
