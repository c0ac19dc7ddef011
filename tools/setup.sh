#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine: Deno 2.9.6 (from npm); when
# no Vulkan driver is present (a machine without a GPU), Mesa's software one (lavapipe); and
# Chromium, which the browser tests drive, when it is missing.
set -euo pipefail

# The folders where the Vulkan loader looks for installed drivers' manifests (ICD JSON files).
VULKAN_ICD_FOLDERS=(/etc/vulkan/icd.d /usr/local/etc/vulkan/icd.d /usr/share/vulkan/icd.d
  /usr/local/share/vulkan/icd.d)

# Succeeds when any of the folders given holds a driver manifest. Each folder is checked on its
# own: a missing or empty one says nothing about the others.
vulkan_driver_installed() {
  local folder manifest
  for folder in "$@"; do
    for manifest in "$folder"/*.json; do
      [ -f "$manifest" ] && return 0
    done
  done
  return 1
}

main() {
  if ! command -v deno >/dev/null 2>&1 || [ "$(deno --version | head -1 | cut -d' ' -f2)" != "2.9.6" ]; then
    npm install -g deno@2.9.6
  fi

  local packages=()
  vulkan_driver_installed "${VULKAN_ICD_FOLDERS[@]}" || packages+=(mesa-vulkan-drivers)
  command -v chromium >/dev/null 2>&1 || packages+=(chromium)
  if [ ${#packages[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${packages[@]}"
  fi
}

# Sourced (by its test), it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
