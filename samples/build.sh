#!/usr/bin/env bash
# Builds the sample apps into FROM-scratch images: rouse-samples/hello:latest,
# rouse-samples/sleeper:latest and rouse-samples/event-display:latest. Needs only cargo and
# docker; works from any directory, and is quick when nothing changed (cargo and docker's layer
# cache both see no change).
set -euo pipefail

samples=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$samples")
apps=(hello sleeper event-display)

# FROM scratch has no libc, so the binaries link it statically. The host's own target is named
# explicitly, which keeps the static build apart from the workspace's ordinary one. Symbols are
# stripped: nothing in the image reads them, and they are a fifth of its size.
target=x86_64-unknown-linux-gnu
host=$(rustc -vV | sed -n 's/^host: //p')
if [[ $host != "$target" ]]; then
    echo "samples/build.sh: the images are built for $target, but this rustc's host is $host" >&2
    exit 1
fi

cd "$repo"
CARGO_PROFILE_RELEASE_STRIP=symbols RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --target "$target" -p rouse-sample-hello -p rouse-sample-sleeper -p rouse-sample-event-display
# Where cargo put them: target/ unless CARGO_TARGET_DIR or a cargo config says otherwise.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
for app in "${apps[@]}"; do
    mkdir "$context/$app"
    cp "$target_dir/$target/release/$app" "$samples/$app/Dockerfile" "$context/$app/"
    # docker build's stderr is shown only on failure: 20.10's legacy builder warns on every run.
    if ! docker build -q -t "rouse-samples/$app:latest" "$context/$app" >/dev/null 2>"$context/$app.log"; then
        cat "$context/$app.log" >&2
        echo "samples/build.sh: docker build of rouse-samples/$app failed" >&2
        exit 1
    fi
done
for app in "${apps[@]}"; do
    echo "rouse-samples/$app:latest"
done
