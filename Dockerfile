# The two images of mcp-warden, from one build:
#   docker build --target operator -t ghcr.io/mcp-warden/mcp-warden-operator:0.1.0 .
#   docker build --target sidecar  -t ghcr.io/mcp-warden/mcp-warden-sidecar:0.1.0 .
# Both run as the distroless `nonroot` user (65532), with nothing but the binary and CA roots.
# (Building needs crates.io; the build machines of this project cannot run Docker, see docs/e2e.md.)

# The base images, overridable for registries that mirror them, and for machines that reach
# none (scripts/image.sh builds stand-ins from Debian packages and passes them here).
ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# The toolchain the workspace is built and tested with.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mcp-warden-operator -p mcp-warden-sidecar \
 && mkdir -p /out \
 && cp target/release/mcp-warden-operator target/release/mcp-warden-sidecar target/release/mcp-warden /out/

FROM ${RUNTIME_IMAGE} AS operator
COPY --from=build /out/mcp-warden-operator /usr/local/bin/mcp-warden-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcp-warden-operator"]
CMD ["run"]

FROM ${RUNTIME_IMAGE} AS sidecar
COPY --from=build /out/mcp-warden-sidecar /out/mcp-warden /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcp-warden-sidecar"]
