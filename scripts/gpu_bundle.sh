#!/usr/bin/env bash
# Build the bundle that runs benchmarks/gpu_check.py on a device machine without internet access.
#
#   scripts/gpu_bundle.sh [OUT]        # default OUT: gpu_bundle (ignored by git); a few minutes
#
# The device image has Python 3.12 and torch (2.11.0+cu130 on the last run, results/gpu.md); it lacks this
# project's other dependencies and Mesa's EGL (the mesh renderer stopped on 'libGL.so not loaded'). The
# bundle holds:
#   OUT/wheels/   cp312 manylinux wheels of the project's dependencies and test tools (pip download,
#                 resolved against the device's torch; torch, its CUDA libraries and triton are left out:
#                 the device has them), and the project itself as a wheel
#   OUT/debs/     Mesa's EGL/GL loader and drivers with their library dependencies (apt-get download; the
#                 run script unpacks them into OUT/root without root rights)
#   OUT/run.sh    on the device: install the wheels offline, unpack the .debs, point the EGL/GL loaders at
#                 them, run `python benchmarks/gpu_check.py "$@"` from the repository root
# Carry OUT with the run (the device tool's `carry`), then run `bash OUT/run.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_bundle}
DEVICE_TORCH=${DEVICE_TORCH:-2.11.0}
PY=${PYTHON:-python3}
mkdir -p "$OUT/wheels" "$OUT/debs"

# 1. Wheels for CPython 3.12 on x86_64 Linux, whatever this machine runs.
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform linux_x86_64 --platform any)
deps=$("$PY" - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["dev"]))
PY
)
mapfile -t requirements <<<"$deps"
"$PY" -m pip download --quiet --dest "$OUT/wheels" --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 "${platforms[@]}" "torch==$DEVICE_TORCH" "${requirements[@]}"
rm -f "$OUT"/wheels/torch-*.whl "$OUT"/wheels/nvidia_*.whl "$OUT"/wheels/triton-*.whl
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$OUT/wheels" .

# 2. Mesa's EGL/GL with the libraries they load (the device image has libc and the basics; what it has
#    already is unpacked beside it and shadowed by nothing the loader asks for first).
packages=(libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglx-mesa0 libgl1 libgbm1 libglapi-mesa
          libdrm2 libwayland-client0 libwayland-server0 libx11-xcb1 libxcb-dri2-0 libxcb-dri3-0
          libxcb-present0 libxcb-sync1 libxcb-xfixes0 libxshmfence1 libxcb-randr0 libllvm15 libsensors5
          libz3-4 libelf1 libexpat1 libxcb1 libx11-6 libxau6 libxdmcp6 libbsd0 libmd0 libglvnd0
          libxext6 libxxf86vm1 libxfixes3 libedit2 libtinfo6 libxml2 libicu72 libzstd1 libffi8)
for package in "${packages[@]}"; do
    (cd "$OUT/debs" && apt-get download -qq "$package") || echo "warning: no .deb for $package here" >&2
done

# 3. The run script.
cat > "$OUT/run.sh" <<'RUN'
#!/usr/bin/env bash
# On the device, from the repository root: install offline, unpack Mesa, run the GPU check.
set -euo pipefail
BUNDLE=$(cd "$(dirname "$0")" && pwd)
python -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" clip2point torch-optimizer pytest moto boto3
mkdir -p "$BUNDLE/root"
for deb in "$BUNDLE"/debs/*.deb; do dpkg-deb -x "$deb" "$BUNDLE/root"; done
LIB="$BUNDLE/root/usr/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIBGL_DRIVERS_PATH="$LIB/dri"
export __EGL_VENDOR_LIBRARY_FILENAMES="$BUNDLE/root/usr/share/glvnd/egl_vendor.d/50_mesa.json"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/gpu_check.py "$@"
RUN
chmod +x "$OUT/run.sh"
echo "bundle in $OUT: $(ls "$OUT/wheels" | wc -l) wheels, $(ls "$OUT/debs" | wc -l) .debs; on the device: bash $OUT/run.sh"
