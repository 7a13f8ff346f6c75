#!/usr/bin/env bash
# Source ROS and the geoloc_ros environment, then launch the stack; extra arguments go to the launch file.
set -e
for setup in /opt/ros/*/install/setup.bash /opt/ros/*/setup.bash; do
  [ -f "$setup" ] && source "$setup" && break
done
source /opt/geoloc/.venv/geoloc_env.sh
exec ros2 launch geoloc_ros geoloc.launch.py "$@"
