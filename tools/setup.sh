#!/usr/bin/env bash
# Create the project's virtual environment and install everything, pinned by the constraint set of the
# Python that runs it: requirements/constraints-py3.10.txt (ROS 2 Humble, Jetson), -py3.11, -py3.12 (Jazzy).
#
#   tools/setup.sh              # runtime + training + dev tools (what `make demo` / `make test` need)
#   GEOLOC_EXTRAS=runtime tools/setup.sh   # vehicle: no torch, no dev tools
#   GEOLOC_EDITABLE=0 ...                  # a regular (non-editable) install, as the Docker images do
#   GEOLOC_CONSTRAINTS=requirements/constraints-py3.12.txt ...  # assert the set (the Docker images do)
#   source .venv/geoloc_env.sh             # afterwards, with ROS sourced: `ros2 launch geoloc_ros ...` works
#
# If a ROS 2 installation is sourced (ROS_DISTRO set and its rclpy importable), the venv sees the system
# site-packages and uses that rclpy; otherwise the ROS 2 Python wheels from PyPI are installed.
# onnxruntime-gpu replaces onnxruntime when an NVIDIA GPU is present (or GEOLOC_ONNXRUNTIME=gpu).
# Re-running is cheap: nothing is reinstalled unless the pins or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${GEOLOC_VENV:-.venv}"
EXTRAS="${GEOLOC_EXTRAS:-train,dev}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" - <<'PY' || { echo "tools/setup.sh: Python 3.10-3.12 is required" >&2; exit 1; }
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PY
py_version="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
CONSTRAINTS="requirements/constraints-py${py_version}.txt"
# The Docker images name their set (test/test_docker.py checks it against the base image's Python):
# refuse a set made for another Python rather than install something untested.
if [ -n "${GEOLOC_CONSTRAINTS:-}" ] && [ "$GEOLOC_CONSTRAINTS" != "$CONSTRAINTS" ]; then
  echo "tools/setup.sh: GEOLOC_CONSTRAINTS=$GEOLOC_CONSTRAINTS but this is Python $py_version ($CONSTRAINTS)" >&2
  exit 1
fi
echo "tools/setup.sh: Python $py_version, constraints $CONSTRAINTS"

use_system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c "import rclpy" 2>/dev/null; then
  use_system_ros=1
fi

if [ "${GEOLOC_ONNXRUNTIME:-auto}" = "gpu" ] || { [ "${GEOLOC_ONNXRUNTIME:-auto}" = "auto" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
  ort_extra="gpu"
else
  ort_extra="cpu"
fi
extras="$ort_extra"
[ "$EXTRAS" = "runtime" ] || extras="$extras,$EXTRAS"

stamp_input="$(cat "$CONSTRAINTS" setup.py requirements/ros-wheels.txt; echo "$use_system_ros $extras ${GEOLOC_EDITABLE:-1} $("$PYTHON" --version)")"
stamp="$(printf '%s' "$stamp_input" | sha256sum | cut -d' ' -f1)"
if [ -f "$VENV/.geoloc-setup-stamp" ] && [ "$(cat "$VENV/.geoloc-setup-stamp")" = "$stamp" ]; then
  echo "tools/setup.sh: $VENV is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if [ "$use_system_ros" = 1 ]; then
    echo "tools/setup.sh: using the sourced ROS 2 $ROS_DISTRO rclpy (venv with system site-packages)"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade "pip>=23.1" "setuptools>=68" wheel
if [ "$use_system_ros" = 0 ]; then
  if [ "$(uname -m)" != "x86_64" ]; then
    echo "tools/setup.sh: the ROS 2 Python wheels on PyPI are x86_64 only; source ROS 2 (e.g. Humble) first" >&2
    exit 1
  fi
  echo "tools/setup.sh: no ROS 2 installation sourced; installing the ROS 2 Python wheels from PyPI"
  "${pip[@]}" install --quiet -c "$CONSTRAINTS" -r requirements/ros-wheels.txt
fi
if [ "$ort_extra" = "gpu" ]; then
  "${pip[@]}" uninstall --quiet -y onnxruntime 2>/dev/null || true
fi
echo "tools/setup.sh: installing geoloc_ros[$extras]"
if [ "${GEOLOC_EDITABLE:-1}" = 1 ]; then
  "${pip[@]}" install --quiet -c "$CONSTRAINTS" -e ".[$extras]"
else
  "${pip[@]}" install --quiet -c "$CONSTRAINTS" ".[$extras]"
fi

# Make the venv a complete ament prefix so `ros2 launch geoloc_ros ...` finds the package (ament index
# marker, share/geoloc_ros with package.xml, launch/, config/, models/) and its node executables. A regular
# install gets share/ from setup.py's data_files; an editable one does not, so link the source tree's files
# (edits to the launch file and config show at once). test/test_packaging.py checks it with ament_index_python.
venv_abs="$(cd "$VENV" && pwd)"
repo_abs="$(pwd)"
if [ "${GEOLOC_EDITABLE:-1}" = 1 ]; then
  mkdir -p "$VENV/share/ament_index/resource_index/packages" "$VENV/share/geoloc_ros"
  ln -sfn "$repo_abs/resource/geoloc_ros" "$VENV/share/ament_index/resource_index/packages/geoloc_ros"
  for item in package.xml launch config models; do
    ln -sfn "$repo_abs/$item" "$VENV/share/geoloc_ros/$item"
  done
fi
mkdir -p "$VENV/lib/geoloc_ros"
for exe in camera_ingest bovw_localizer posenet_localizer pose_fusion; do
  ln -sf "$venv_abs/bin/$exe" "$VENV/lib/geoloc_ros/$exe"
done
cat > "$VENV/geoloc_env.sh" <<ENV
# Source after ROS' setup.bash: puts geoloc_ros' executables and ament resources on the paths.
export AMENT_PREFIX_PATH="$venv_abs\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export PATH="$venv_abs/bin:\$PATH"
ENV
printf '%s' "$stamp" > "$VENV/.geoloc-setup-stamp"
echo "tools/setup.sh: done ($VENV)"
