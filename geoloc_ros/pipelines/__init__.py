"""Drive-level runners above the core: localize, fuse, run PoseNet and evaluate a recorded drive.

The core packages (localize, posenet, fusion, evaluation, ...) each do one job on one frame or one
stream; the modules here wire them over a whole drive for ``geoloc localize``, ``geoloc evaluate``,
``geoloc posenet evaluate``, the demo and the benchmarks. Nothing in the core imports this package.
This ``__init__`` imports nothing, so importing one runner does not pull in the others' dependencies.
"""
