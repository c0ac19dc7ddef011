# Sourced, in the repository root, by the scripts for a lent GPU machine (bench/gpu_side_by_side.sh,
# bench/gpu_fast94.sh; bench/README.md, "Side by side on a GPU"): unpacks the Vulkan loader the
# call carried (.gl/*.deb) and, where the image lists no Vulkan driver of its own, points it at
# NVIDIA's; unpacks the carried Deno (.gpu/deno.xz) and its npm cache (.gpu/deno_dir.tar.xz: nothing
# can be fetched there) under /tmp, and exports PATH, DENO_DIR, XDG_RUNTIME_DIR and
# DENO_NO_UPDATE_CHECK for them.
for deb in .gl/*.deb; do dpkg -x "$deb" /; done
ldconfig
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$nvidia_icd" ] && ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$nvidia_icd
fi
mkdir -p /tmp/deno_bin /tmp/deno_dir /tmp/xdg
xz -dc .gpu/deno.xz >/tmp/deno_bin/deno && chmod +x /tmp/deno_bin/deno
tar -C /tmp/deno_dir -xJf .gpu/deno_dir.tar.xz
export PATH=/tmp/deno_bin:$PATH DENO_DIR=/tmp/deno_dir XDG_RUNTIME_DIR=/tmp/xdg DENO_NO_UPDATE_CHECK=1
