#!/bin/sh
# Trims a production node_modules (npm ci --omit=dev) of files this project never loads, for the
# runtime images and for test/docker/runtime-tree.test.ts, which checks that the trimmed tree runs.
# Run from the directory that holds node_modules.
set -eu
# onnxruntime-node bundles macOS and Windows binaries (about 220 MB) that Linux never loads.
rm -rf node_modules/onnxruntime-node/bin/napi-v*/darwin node_modules/onnxruntime-node/bin/napi-v*/win32
# Prisma's client runtime carries a query compiler for every database it supports; Coalesce runs on
# Postgres only (packages/db/src/generated loads query_compiler_fast_bg.postgresql). Source maps of
# the runtime are for Prisma's own debugging.
rm -f node_modules/@prisma/client/runtime/*sqlserver* node_modules/@prisma/client/runtime/*cockroachdb* \
  node_modules/@prisma/client/runtime/*mysql* node_modules/@prisma/client/runtime/*sqlite* \
  node_modules/@prisma/client/runtime/*.map
