# One image for every burrow node (see docker-compose.yml). Two stages: dependencies are
# installed (better-sqlite3 compiles if no prebuilt binary fits) where the build tools are, and
# only the runtime — Node, nats-server, curl for the health check, the sqlite3 shell for people —
# goes into the slim image, which runs as an unprivileged user.
FROM node:20-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends nats-server sqlite3 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown node:node /data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json cluster.docker.toml ./
COPY bin ./bin
COPY cmd ./cmd
COPY src ./src
# See src/node/process-flags.ts.
ENV NODE_OPTIONS=--max-semi-space-size=64
USER node
VOLUME ["/data"]
ENTRYPOINT ["node", "bin/burrow.js"]
