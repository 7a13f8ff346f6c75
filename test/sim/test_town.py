"""The procedural town: determinism, buildings off the streets, outward walls, ground materials."""

from __future__ import annotations

import numpy as np

from geoloc_ros.sim.scenario import preset
from geoloc_ros.sim.town import EPOCH_CAPTURE, EPOCH_DRIVE, GROUND_CELL_M, QuadKind, Town, build_town


def test_same_seed_same_town_other_seed_other_town() -> None:
    a, b, c = build_town(preset("tiny"), 4), build_town(preset("tiny"), 4), build_town(preset("tiny"), 5)
    assert np.array_equal(a.quads.origin, b.quads.origin)
    assert a.quads.textures == b.quads.textures
    assert len(a.quads) != len(c.quads) or not np.allclose(a.quads.origin, c.quads.origin)


def test_buildings_stand_off_the_streets_and_walls_face_out(tiny_town: Town) -> None:
    net = tiny_town.network
    assert len(tiny_town.buildings) > 5
    for b in tiny_town.buildings:
        centre = b.footprint.mean(axis=0)
        assert net.nearest(b.footprint).clearance.min() >= 0.2
        assert net.nearest(centre[None]).clearance[0] > 0
    q = tiny_town.quads
    facades = np.nonzero(q.kind == QuadKind.FACADE)[0]
    for i in facades[:40]:
        foot = next(
            b
            for b in tiny_town.buildings
            if np.min(np.linalg.norm(b.footprint - q.origin[i, :2], axis=1)) < 1e-6
        )
        to_centre = np.append(foot.footprint.mean(axis=0), 0.0) - q.centre[i]
        assert q.normal[i] @ to_centre < 0, "façade normals point out of the building"
    assert np.allclose(np.linalg.norm(q.normal, axis=1), 1.0)


def test_capture_and_drive_epochs_differ_in_occluders_not_in_buildings(tiny_town: Town) -> None:
    q = tiny_town.quads
    moving = (q.kind == QuadKind.VEHICLE) | (q.kind == QuadKind.PEDESTRIAN)
    assert np.all(q.epochs[moving] != EPOCH_CAPTURE | EPOCH_DRIVE)
    assert (q.epochs[moving] == EPOCH_CAPTURE).any() and (q.epochs[moving] == EPOCH_DRIVE).any()
    posters = q.kind == QuadKind.POSTER
    assert (q.epochs[posters] == EPOCH_DRIVE).any(), "some posters are replaced for the drive"


def test_ground_tiles_show_asphalt_markings_kerbs_and_sidewalks(tiny_town: Town) -> None:
    st = tiny_town.network.streets[0]
    pos, tan = st.point_at(st.length / 2)
    left = np.array([-tan[1], tan[0]])
    samples = {
        "road": pos + left * (st.half_width * 0.5),
        "sidewalk": pos + left * (st.half_width + 0.2 + 0.5 * st.sidewalk),
    }
    colours = {}
    for name, xy in samples.items():
        ix, iy = np.floor((xy - tiny_town.ground_origin) / GROUND_CELL_M).astype(int)
        cell = iy * tiny_town.ground_cells[0] + ix
        tile = tiny_town.ground_texture(int(cell), 0)
        assert tile.shape[2] == 4 and tile[0, 0, 3] == 0 and tile[1, 1, 3] == 255
        origin, side = tiny_town.ground_cell_geometry(np.array([cell]))
        n = tile.shape[0] - 2
        col = int((xy[0] - origin[0, 0]) / side * n) + 1
        row = int((origin[0, 1] + side - xy[1]) / side * n) + 1
        colours[name] = tile[row - 2 : row + 3, col - 2 : col + 3, :3].reshape(-1, 3).mean(axis=0)
    assert colours["road"].mean() < 110, "asphalt is dark"
    assert colours["sidewalk"].mean() > colours["road"].mean() + 30, "sidewalk slabs are light"
    # Somewhere on the street's tiles there is white paint (centre dashes, edge lines or zebras).
    tile = tiny_town.ground_texture(
        int(np.floor((pos[1] - tiny_town.ground_origin[1]) / GROUND_CELL_M)) * tiny_town.ground_cells[0]
        + int(np.floor((pos[0] - tiny_town.ground_origin[0]) / GROUND_CELL_M)),
        0,
    )
    assert (tile[..., :3].min(axis=2) > 180).mean() > 0.002


def test_texture_cache_is_bounded() -> None:
    town = build_town(preset("tiny"), 1, cache_bytes=4 << 20)
    for i in range(0, len(town.quads), 7):
        town.quad_texture(i)
    assert 0 < town.cache_nbytes <= 4 << 20
