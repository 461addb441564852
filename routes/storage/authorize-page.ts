import { Eta } from 'eta'
import type { Authorization } from '../../services/storage/storage.service.js'

type Page = Extract<Authorization, { page: unknown }>['page']

// Plain HTML under the API's CSP (default-src 'none'): no script, no style, nothing loaded; links only.
const template = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect <%= it.provider %> to Fractal</title>
</head>
<body>
<h1>Connect <%= it.provider %> to Fractal</h1>
<p>You are about to connect your <%= it.provider %> account to the Fractal account <strong id="account"><%= it.accountEmail %></strong>.
Apps streamed for that account will be able to read and write your files.</p>
<p>If that is not your Fractal account, or you did not just ask for this in the Fractal app, cancel:
someone may be trying to reach your files through their account.</p>
<p><a id="continue" href="<%= it.continueUrl %>">Continue to <%= it.provider %></a></p>
<p><a id="cancel" href="<%= it.cancelUrl %>">Cancel</a></p>
<p><small>This page works in this browser only, until <%= it.expiresAt.toISOString() %>.</small></p>
</body>
</html>
`

const eta = new Eta({ autoEscape: true, autoTrim: false })
eta.loadTemplate('@authorize', template)

/** The authorization page: whose Fractal account the connection goes to, Continue (to the provider) and Cancel. */
export function authorizePage (page: Page): string {
  return eta.render('@authorize', page)
}
