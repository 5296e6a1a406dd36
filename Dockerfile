# syntax=docker/dockerfile:1
# rwkvx-serve image: one Dockerfile for CPU nodes (the default: plain Debian 12) and GPU
# nodes (build args: a CUDA devel base to build, a matching base to run). docs/DEPLOY.md.
#
#   podman build --format docker -t rwkvx-serve:cpu .
#   podman build --format docker -t rwkvx-serve:cuda \
#     --build-arg BUILD_BASE=docker.io/nvidia/cuda:13.0.1-devel-ubuntu24.04 \
#     --build-arg RUNTIME_BASE=docker.io/library/ubuntu:24.04 .
#
# The runtime stage holds the binary, the shared libraries it links (glibc excepted; the
# CUDA driver library comes from the node through the NVIDIA container runtime) and two
# small scripts. The served default model is generated in code: no model file is needed.

ARG BUILD_BASE=docker.io/library/debian:12
ARG RUNTIME_BASE=docker.io/library/debian:12

# ---------------------------------------------------------------------------- build
FROM ${BUILD_BASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Versions are not pinned: the same list installs on Debian 12 and on Ubuntu 24.04 (the
# CUDA images), whose versions differ; the base image tag pins the distribution release.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev \
      prometheus-cpp-dev nlohmann-json3-dev libboost-dev libboost-system-dev \
      libopenblas-dev zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY CMakeLists.txt ./
COPY engine engine
COPY kernels kernels
COPY proto proto
COPY server server
COPY tools tools
COPY bench bench

# BUILD_JOBS: compile jobs (keep low on small build machines). CUDA_ARCHS: GPU targets
# when nvcc is in the base (ignored on the CPU base).
ARG BUILD_JOBS=2
ARG CUDA_ARCHS="80-real;90a-real;90-virtual"
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DRWKVX_TESTS=OFF \
      "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}" \
 && cmake --build build --target rwkvx -j "${BUILD_JOBS}"

# Gather the binary and every shared library it resolves, except glibc's own (the
# runtime base has those) and the CUDA driver (mounted from the node).
RUN mkdir -p /out/bin /out/lib \
 && cp build/rwkvx /out/bin/ \
 && strip --strip-unneeded /out/bin/rwkvx \
 && ldd build/rwkvx | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*|libcuda|libnvidia[^/]*)\.so' \
    | xargs -r cp -L -t /out/lib/
COPY deploy/container/entrypoint.sh /out/bin/entrypoint
COPY deploy/container/healthcheck.sh /out/bin/healthcheck

# -------------------------------------------------------------------------- runtime
FROM ${RUNTIME_BASE} AS runtime
COPY --from=build /out /opt/rwkvx
# A fixed numeric non-root user (Kubernetes' runAsNonRoot checks the number), and the
# directory that --session-dir will use (issue 7) owned by it.
RUN mkdir -p /var/lib/rwkvx/sessions && chown -R 10001:10001 /var/lib/rwkvx
ENV LD_LIBRARY_PATH=/opt/rwkvx/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RWKVX_FLAG_HOST=0.0.0.0 \
    RWKVX_FLAG_HTTP_PORT=8080 \
    RWKVX_FLAG_GRPC_PORT=50051
USER 10001:10001
WORKDIR /var/lib/rwkvx
EXPOSE 8080 50051
# Liveness of the HTTP listener (GET /health), with bash only: no curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/rwkvx/bin/healthcheck"]
# Every RWKVX_FLAG_<NAME>=<value> becomes --<name>=<value>; arguments are appended.
ENTRYPOINT ["/opt/rwkvx/bin/entrypoint"]
