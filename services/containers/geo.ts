// Where a client is, for "the nearest region": the edge's geo headers first (CloudFront's viewer headers,
// Cloudflare's visitor location headers), else geoip-lite on the client IP (its database is ~100 MB in
// memory, so it is loaded on the first lookup that needs it, never at start-up).
import { isIP } from 'node:net'

export interface Location { latitude: number, longitude: number }

type Headers = Record<string, string | string[] | undefined>

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)

function coordinates (lat: string | undefined, lon: string | undefined): Location | null {
  if (lat === undefined || lon === undefined || lat.trim() === '' || lon.trim() === '') return null
  const latitude = Number(lat)
  const longitude = Number(lon)
  if (!Number.isFinite(latitude) || !Number.isFinite(longitude) || Math.abs(latitude) > 90 || Math.abs(longitude) > 180) return null
  return { latitude, longitude }
}

/** The location the edge put in the request, if any (malformed values are ignored, never an error). */
export function locationFromHeaders (headers: Headers): Location | null {
  return coordinates(first(headers['cloudfront-viewer-latitude']), first(headers['cloudfront-viewer-longitude'])) ??
    coordinates(first(headers['cf-iplatitude']), first(headers['cf-iplongitude']))
}

let geoip: Promise<{ lookup (ip: string): { ll: [number, number] } | null }> | undefined

/** geoip-lite's guess for a public IP; null for private, loopback or unknown addresses. */
export async function locationOfIp (ip: string): Promise<Location | null> {
  if (!isIP(ip) || /^(10\.|127\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|::1$|fc|fd|fe80:)/i.test(ip)) return null
  geoip ??= import('geoip-lite').then((m) => (m.default ?? m) as never)
  const found = (await geoip).lookup(ip)
  if (!found || (found.ll[0] === 0 && found.ll[1] === 0)) return null
  return { latitude: found.ll[0], longitude: found.ll[1] }
}

/** Great-circle distance in km (haversine). */
export function distanceKm (a: Location, b: Location): number {
  const rad = Math.PI / 180
  const dLat = (b.latitude - a.latitude) * rad
  const dLon = (b.longitude - a.longitude) * rad
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)))
}

export interface RegionOffer extends Location { region_code: string, warm: number }

/** Within this much of the nearest region, a region with a warm container wins (an instant start). */
export const nearEnoughKm = 1000

/**
 * The regions for a client, best first: the nearest open one; among those about as near (within
 * `nearEnoughKm` of the nearest), those with a warm container first (an instant start); then the rest by
 * distance. The assignment takes the first its plan allows. Without a location, the catalog's order.
 */
export function rankRegions (offers: RegionOffer[], near: Location | null): RegionOffer[] {
  if (!near || offers.length < 2) return offers
  const byDistance = offers.map((o) => ({ o, d: distanceKm(near, o) })).sort((x, y) => x.d - y.d)
  const limit = byDistance[0]!.d + nearEnoughKm
  const warmNearby = byDistance.filter((x) => x.o.warm > 0 && x.d <= limit)
  return [...warmNearby, ...byDistance.filter((x) => !warmNearby.includes(x))].map((x) => x.o)
}

/** The client's location: the edge's headers, else (when enabled) geoip-lite on its IP. */
export async function locateClient (headers: Headers, ip: string, useGeoip: boolean): Promise<Location | null> {
  return locationFromHeaders(headers) ?? (useGeoip ? locationOfIp(ip) : null)
}
