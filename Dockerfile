# Bastion image: the hub, workers and agents are the same program (`bastion <command>`).
# Node 22.18+ runs the TypeScript sources directly (type stripping), so there is no build step.
FROM node:22-bookworm-slim
WORKDIR /opt/bastion
# attr: xattrs in raw_tree_v1 backups (getfattr/setfattr); without it backups record no xattrs.
RUN apt-get update && apt-get install -y --no-install-recommends attr && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY bin ./bin
COPY cli ./cli
COPY core ./core
COPY db ./db
COPY engine ./engine
COPY gateway ./gateway
COPY worker ./worker
COPY agent ./agent
COPY sql ./sql
ENV BASTION_DATA_DIR=/var/lib/bastion
VOLUME /var/lib/bastion
EXPOSE 8787
ENTRYPOINT ["node", "cli/main.ts"]
CMD ["hub", "--listen", "0.0.0.0:8787"]
