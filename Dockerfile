# syntax=docker/dockerfile:1
# The SDSHypervisor CSI driver image. One image, two roles chosen by the chart's --mode:
#   - the node plugin (DaemonSet) MUST run privileged as root: it runs the host's sds_cli, formats and mounts
#     block devices and propagates mounts back to the host;
#   - the controller (Deployment) runs as non-root (the chart sets runAsUser 65532): it only talks to the API
#     server and to the VBS over the network.
# The image's default user is therefore non-root; the chart's node DaemonSet sets runAsUser 0 and privileged.

# ---- build: compile TypeScript and the emulator's C sds_cli, then keep production dependencies only ----
FROM node:24-bookworm-slim AS build
# python3, make and g++ build better-sqlite3's native addon; cc (from gcc, a g++ dependency) builds sds_cli.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The sources (package.json, proto/, src/, emulator/, scripts/, ...); .dockerignore keeps local state out.
COPY . .
# npm ci also runs the "prepare" script (the build); the explicit build keeps this step obvious.
RUN npm ci --no-audit --no-fund \
 && npm run build \
 && npm prune --omit=dev \
 && mkdir -p emulator/bin

# ---- runtime: Node, the filesystem tools the node plugin runs, and the built driver ----
FROM node:24-bookworm-slim
# e2fsprogs/xfsprogs: mkfs, fsck, resize2fs, xfs_growfs; util-linux: mount, blkid, findmnt, losetup;
# qemu-utils: qemu-img for image formats; tini reaps the tools' orphaned children as PID 1.
RUN apt-get update \
 && apt-get install -y --no-install-recommends e2fsprogs xfsprogs util-linux qemu-utils ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/proto ./proto
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The emulator's sds_cli, used only by --mode=all (demos and tests without a real SDSHypervisor).
COPY --from=build /src/emulator/bin ./emulator/bin
ENV NODE_ENV=production
# Non-root by default (see the top of this file); the node plugin overrides it to root.
USER 65532:65532
# --max-semi-space-size=4: a smaller young generation under bursts of calls (src/config/deployed-node-args.ts says why).
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=4", "/app/dist/src/main.js"]
CMD ["--help"]
