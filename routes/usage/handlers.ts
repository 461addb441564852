import type { Handlers } from '../../openapi/handler-types.js'
import * as usage from '../../services/usage/usage.service.js'

export const handlers = {
  async getUsageReport (request, reply) {
    const { from, to, groupBy, limit = 20, cursor } = request.query
    const report = await usage.usageReport(this.db, { from, to, groupBy, limit, cursor })
    reply.header('vary', 'Accept')
    if (!prefersCsv(request.headers.accept)) return { ...report, from: report.from.toISOString(), to: report.to.toISOString() }
    if (report.nextCursor) {
      const next = new URLSearchParams({ from, to, groupBy, limit: String(limit), cursor: report.nextCursor })
      reply.header('link', `</v1/admin/usage?${next}>; rel="next"`)
    }
    reply.type('text/csv; charset=utf-8')
    return usage.usageReportCsv(report)
  }
} satisfies Handlers<'usage'>

/** CSV when the client asks for text/csv over JSON (a plain `Accept: text/csv`, or it ranked higher). */
function prefersCsv (accept: string | undefined): boolean {
  if (!accept) return false
  const ranked = accept.split(',').map((part) => {
    const [type = '', ...params] = part.trim().toLowerCase().split(';').map((p) => p.trim())
    const q = params.find((p) => p.startsWith('q='))
    return { type, q: q ? Number(q.slice(2)) : 1 }
  })
  const weight = (types: string[]) => Math.max(0, ...ranked.filter((r) => types.includes(r.type)).map((r) => r.q))
  const csv = weight(['text/csv'])
  return csv > 0 && csv > weight(['application/json', 'application/*', '*/*'])
}
