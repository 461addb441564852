import type { Handlers } from '../../openapi/handler-types.js'
import * as containers from '../../services/containers/containers.service.js'
import { presentJob } from '../containers/present.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async getJob (request) {
    return presentJob(await containers.getJob(this.db, principalOf(request), request.params.jobId))
  },

  async cancelJob (request) {
    return presentJob(await containers.cancelJob(this.db, this.containerDeps, principalOf(request), request.params.jobId))
  }
} satisfies Handlers<'jobs'>
