# hoist: build with the locked dependencies, run on a slim Debian with the
# git and ssh that pushing needs. scripts/build-image builds the same image
# without a Docker engine: it reads the package list (image/packages), the
# suite of the last FROM, the groupadd and useradd lines, USER, ENV,
# ENTRYPOINT and CMD from here, so change them here.
FROM docker.io/library/rust:1.95-trixie AS build
ARG HOIST_GIT_COMMIT=unknown
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# The release profile keeps line tables for backtraces; the image does not
# ship them (they are five sixths of the binary).
RUN HOIST_GIT_COMMIT="$HOIST_GIT_COMMIT" cargo build --release --locked --bin hoist \
    && strip --strip-debug target/release/hoist

FROM docker.io/library/debian:trixie-slim
# A failing grep must fail the build, not install nothing.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY image/packages /tmp/packages
# ssh refuses to run for a uid without a passwd entry: hoist gets one, in a
# group of the same id (useradd --user-group would pick the next free gid).
RUN apt-get update \
    && grep -v '^#' /tmp/packages | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/packages \
    && groupadd --gid 65532 hoist \
    && useradd --uid 65532 --gid 65532 --home-dir /var/lib/hoist --no-create-home hoist
COPY --from=build /src/target/release/hoist /usr/local/bin/hoist
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hoist"]
CMD ["controller"]
