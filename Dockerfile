# syntax=docker/dockerfile:1
#
# Fractal webserver. One image, three commands:
#   web (default)  docker run -p 3000:3000 -e DATABASE_URL=… -e REDIS_URL=… -e CLOUD_PROVIDER=aws -e JWT_PRIVATE_KEY="$(cat key.pem)" fractal-webserver
#   worker         docker run --no-healthcheck -e … fractal-webserver node dist/worker.js
#   migrations     docker run --rm --no-healthcheck -e … fractal-webserver node dist/db/migrate.js
#   stripe sync    docker run --rm --no-healthcheck -e … -e STRIPE_SECRET_KEY=… fractal-webserver node dist/stripe-sync.js
# Production does not migrate on start (DATABASE_AUTO_MIGRATE defaults to off): run the migrations as a
# release step before rolling out web and worker (/readyz answers 503 while one is pending). NODE_ENV=production
# refuses to start without DATABASE_URL, REDIS_URL and CLOUD_PROVIDER (aws, or simulated on purpose) and
# requires JWT_PRIVATE_KEY, in the worker and migrations too (they load the same config).
# The worker serves no API, so its health check would always fail: disable it (--no-healthcheck, or
# `healthcheck: { disable: true }` in compose). Its Prometheus metrics (jobs processed, job durations, process)
# are served at /metrics on WORKER_METRICS_PORT when that is set; publish that port to the scraper.
# Tracing: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://otel-collector:4318) to send OTLP/HTTP spans; the
# entries (dist/server.js, dist/worker.js) start it before loading the app, so no --import flag is needed.
# Shutdown: SIGTERM → close-with-grace waits up to SHUTDOWN_GRACE_MS (10 s) for in-flight requests and jobs;
# give the container longer than that to stop (docker stop -t 15, compose stop_grace_period: 15s).

# Node 22 LTS, the supported runtime: Node 20 reached its end of life in April 2026, and cookie@2 and
# content-disposition@3 (through @fastify/cookie and @fastify/static) require 22. Another image:
# --build-arg NODE_IMAGE=….
ARG NODE_IMAGE=node:22-bookworm-slim

# ---- build: every dependency, TypeScript → dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
# dist/ must hold the contract (read at start-up), the compiled migrations (read by kysely's
# FileMigrationProvider from dist/db/migrations at run time) and the SQL functions applied after them
# (dist/db/functions): fail the build if any is missing.
RUN npm run build \
  && test -f dist/openapi/openapi.yaml \
  && ls dist/db/migrations/*.js > /dev/null \
  && ls dist/db/functions/*.sql > /dev/null \
  && test -f dist/services/mail/templates/layout.html.eta \
  && test -f dist/db/plans.json && test -f dist/db/storage-providers.json

# ---- runtime: production dependencies and dist/ only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
# package.json is needed at run time too: its "type": "module" makes dist/*.js ES modules.
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund
# Without DATABASE_URL the app falls back to PGlite (and, outside production, a generated key pair) under
# DATA_DIR, ./.data by default: the one directory the app user may write. Mount a volume there to keep it.
RUN mkdir .data && chown node:node .data
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
# Liveness over loopback: HOST must stay 0.0.0.0 (or include 127.0.0.1) for this to reach the server.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node itself as PID 1 (not npm) so SIGTERM reaches the app.
CMD ["node", "dist/server.js"]
