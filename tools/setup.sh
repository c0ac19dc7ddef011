#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine: Deno 2.9.6 (from npm) and,
# when no Vulkan driver is present (a machine without a GPU), Mesa's software one (lavapipe).
set -euo pipefail

if ! command -v deno >/dev/null 2>&1 || [ "$(deno --version | head -1 | cut -d' ' -f2)" != "2.9.6" ]; then
  npm install -g deno@2.9.6
fi

if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y mesa-vulkan-drivers
fi
