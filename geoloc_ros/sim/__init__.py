"""The simulator: a procedural town, its GIS panoramas and a vehicle drive recorded as a rosbag2.

Public API (see each module):

- :func:`geoloc_ros.sim.scenario.load_scenario` ``(name_or_path) -> Scenario``: presets ``tiny``,
  ``standard``, ``city`` or a YAML file; :func:`~geoloc_ros.sim.scenario.validate_scenario`.
- :func:`geoloc_ros.sim.generate.generate`
  ``(scenario, out_dir, seed, overwrite, workers, progress, drive_seed, drive_only) -> GenerateSummary``:
  the whole data set (layout in docs/formats.md), or with ``drive_only`` another drive (its own
  ``drive_seed``) through the same town; :func:`~geoloc_ros.sim.generate.plan` (geometry only),
  :func:`~geoloc_ros.sim.generate.town_for_plan`, :func:`~geoloc_ros.sim.generate.read_groundtruth`.
- :func:`geoloc_ros.sim.town.build_town` ``(scenario, seed) -> Town``.
- :func:`geoloc_ros.sim.render.render_pinhole`
  ``(town, camera, T_map_optical, conditions) -> (bgr, zdepth)`` and
  :func:`~geoloc_ros.sim.render.render_panorama` ``(town, T_map_body, width, conditions) -> (bgr, range)``
  with :class:`~geoloc_ros.sim.render.Conditions` (``Conditions.flat()`` for geometric tests).
- :mod:`geoloc_ros.sim.gsvdepth`: Street View ``depth_map`` encoding of the coarse plane depth.
"""
