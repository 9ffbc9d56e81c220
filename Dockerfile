# One image, every target: `docker run IMAGE --target=gateway` (k8s/base runs one Deployment per target).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY libs libs
COPY services services
COPY gateway gateway
COPY proto proto
COPY scripts scripts
COPY buf.yaml buf.gen.yaml tsconfig.json tsconfig.base.json ./
RUN npm install --no-audit --no-fund && npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production DATA_DIR=/var/lib/chat
WORKDIR /app
COPY --from=build /app /app
RUN mkdir -p /var/lib/chat && chown 1000:1000 /var/lib/chat
USER 1000
EXPOSE 8080 50051 9464
ENTRYPOINT ["node", "--enable-source-maps", "services/launcher/dist/src/main.js"]
CMD ["--target=all"]
