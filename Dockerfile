# syntax=docker/dockerfile:1
# Build: compile TypeScript and keep production dependencies only.
FROM node:24-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 builds from source when no prebuilt binary fits.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY schemas schemas
COPY src src
RUN npm run build && npm prune --omit=dev

# Run: no compiler, no dev dependencies, not root.
FROM node:24-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8000 DATABASE_URL=/data/coinshop.db
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# The checkout page's static files (found from dist/ by walking up to public/checkout).
COPY public public
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# As `npm start` runs it (test/server.test.ts holds the two together): a young generation of 2 × 8 MB
# instead of V8's 2 × 16 MB, and a full collection once the heap has grown 50 % past what the last
# one found live instead of V8's up to 4× (docs/benchmarks.md, Memory).
CMD ["node", "--max-semi-space-size=8", "--heap-growing-percent=50", "dist/src/server.js"]
