# One image for every burrow node (see docker-compose.yml).
FROM node:20-bookworm
RUN apt-get update -qq && apt-get install -y -qq nats-server sqlite3 python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# See src/node/process-flags.ts.
ENV NODE_OPTIONS=--max-semi-space-size=64
ENTRYPOINT ["node", "bin/burrow.js"]
