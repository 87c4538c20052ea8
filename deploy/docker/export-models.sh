#!/bin/sh
# The export job (compose service `models`, Kubernetes Job `tritongate-export-*`): fills the model
# repository volume that Triton and the API mount.
#
# 1. Copies the committed configs of this image's sources (config.pbtxt, configs/*.pbtxt) into the
#    repository, so the volume always carries the configs of the deployed version.
# 2. Exports every model that has no version yet: `tritongate export all --skip-existing`, with the
#    parity gates. Extra arguments, from the command line or $EXPORT_ARGS, go to it (e.g.
#    `--offline-fallback-random-init` for a demo without hub access: the weights are then random
#    and recorded as such).
#
# Optional inputs in $EXPORT_DATA_DIR (default /data, a read-only mount):
#   20news-bydate.tar.gz   the official 20 Newsgroups archive (else it is downloaded)
#   images/                real photos for the YOLOS parity gate (else generated samples)
#   yolos/                 a local save_pretrained directory (else TRITONGATE_YOLOS_WEIGHTS, a hub id)
set -eu

repository="${TRITONGATE_MODEL_REPOSITORY:-/models}"
configs="${EXPORT_CONFIGS_DIR:-/opt/tritongate/model_repository}"
data="${EXPORT_DATA_DIR:-/data}"

for config in "$configs"/*/config.pbtxt "$configs"/*/configs/*.pbtxt; do
  [ -f "$config" ] || continue
  target="$repository/${config#"$configs"/}"
  mkdir -p "$(dirname "$target")"
  cp "$config" "$target"
  echo "config: $target"
done

if [ -f "$data/20news-bydate.tar.gz" ]; then
  export TRITONGATE_NEWSGROUPS_ARCHIVE="$data/20news-bydate.tar.gz"
fi
if [ -d "$data/images" ]; then
  export TRITONGATE_IMAGES_DIR="$data/images"
fi
if [ -f "$data/yolos/config.json" ]; then
  export TRITONGATE_YOLOS_WEIGHTS="$data/yolos"
fi

# $EXPORT_ARGS is split into words on purpose: it holds options.
# shellcheck disable=SC2086
exec tritongate export all --repository "$repository" --skip-existing ${EXPORT_ARGS:-} "$@"
