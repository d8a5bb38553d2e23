# sluice in a container: built with Rust, run on Debian slim as a non-root user.
#
#   docker build -t sluice .
#   docker run -d --name sluice -p 1935:1935 -p 8080:8080 \
#       -v sluice-conf:/etc/sluice -v sluice-data:/var/lib/sluice sluice
#
# Ports: 1935 RTMP, 8080 the built-in HTTP server (HLS at /hls/, /healthz, /stat, /metrics).
# Volumes: /etc/sluice (sluice.conf, the same seed as the Debian package's: HLS to
# /var/lib/sluice/hls, recordings to /var/lib/sluice/recordings) and /var/lib/sluice.
# `docker stop` sends SIGQUIT, the graceful stop; `docker kill -s HUP` reloads the configuration.
# No ffmpeg in the image: exec and transcode need an image built FROM this one with it added.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice --bin sluice \
    && install -m 0755 -s target/release/sluice /usr/local/bin/sluice

FROM debian:bookworm-slim
# ca-certificates: HTTPS callbacks and rtmps:// relays check servers against the system's roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system sluice \
    && useradd --system --gid sluice --home-dir /var/lib/sluice --no-create-home --shell /usr/sbin/nologin sluice \
    && install -d -o sluice -g sluice -m 0755 /var/lib/sluice /var/lib/sluice/hls /var/lib/sluice/recordings
COPY --from=build /usr/local/bin/sluice /usr/bin/sluice
COPY packaging/sluice.conf /etc/sluice/sluice.conf
# Checked at build time: an image never ships a configuration sluice refuses.
RUN /usr/bin/sluice -t -c /etc/sluice/sluice.conf
VOLUME ["/etc/sluice", "/var/lib/sluice"]
EXPOSE 1935 8080
USER sluice
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/usr/bin/sluice"]
CMD ["-c", "/etc/sluice/sluice.conf"]
