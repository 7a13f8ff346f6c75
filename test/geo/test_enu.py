import numpy as np
import pyproj
import pytest

from geoloc_ros.geo import GeodesyError, GeoOrigin, enu_to_geodetic, geodetic_to_enu

ORIGIN = GeoOrigin(48.8738, 2.2950, 35.0)


def pyproj_enu(lat, lon, alt, origin: GeoOrigin) -> np.ndarray:
    """Independent ENU: WGS84 -> ECEF with PROJ, then the textbook ECEF -> ENU rotation."""
    to_ecef = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    x, y, z = to_ecef.transform(lon, lat, alt)
    x0, y0, z0 = to_ecef.transform(origin.lon_deg, origin.lat_deg, origin.alt_m)
    phi, lam = np.deg2rad(origin.lat_deg), np.deg2rad(origin.lon_deg)
    rot = np.array(
        [
            [-np.sin(lam), np.cos(lam), 0.0],
            [-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)],
            [np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)],
        ]
    )
    d = np.stack([np.asarray(x) - x0, np.asarray(y) - y0, np.asarray(z) - z0], axis=-1)
    return d @ rot.T


def test_enu_matches_pyproj_over_10km():
    rng = np.random.default_rng(0)
    # Points up to ~10 km away in every direction, heights from -50 to +300 m.
    lat = ORIGIN.lat_deg + rng.uniform(-0.09, 0.09, 200)
    lon = ORIGIN.lon_deg + rng.uniform(-0.13, 0.13, 200)
    alt = rng.uniform(-50, 300, 200)
    ours = geodetic_to_enu(lat, lon, alt, ORIGIN)
    reference = pyproj_enu(lat, lon, alt, ORIGIN)
    assert np.abs(ours - reference).max() < 1e-6
    assert np.linalg.norm(ours[:, :2], axis=1).max() > 9000  # the test really spans ~10 km


def test_round_trip_is_exact_to_a_micrometre_over_10km():
    rng = np.random.default_rng(1)
    enu = np.column_stack(
        [rng.uniform(-10_000, 10_000, 500), rng.uniform(-10_000, 10_000, 500), rng.uniform(-100, 100, 500)]
    )
    lat, lon, alt = enu_to_geodetic(enu, ORIGIN)
    back = geodetic_to_enu(lat, lon, alt, ORIGIN)
    assert np.abs(back - enu).max() < 1e-6


def test_not_a_flat_earth_approximation():
    # 10 km east on the tangent plane: the ellipsoid drops below it by about d^2 / (2R) ~ 7.8 m.
    east = geodetic_to_enu(ORIGIN.lat_deg, ORIGIN.lon_deg + 0.1365, ORIGIN.alt_m, ORIGIN)
    assert east[2] < -7.0


def test_origin_maps_to_zero_and_shapes_broadcast():
    assert np.allclose(geodetic_to_enu(ORIGIN.lat_deg, ORIGIN.lon_deg, ORIGIN.alt_m, ORIGIN), 0.0, atol=1e-9)
    out = geodetic_to_enu([48.87, 48.88], 2.29, 35.0, ORIGIN)
    assert out.shape == (2, 3)


@pytest.mark.parametrize(
    ("lat", "lon", "alt", "message"),
    [
        (float("nan"), 2.0, 0.0, "latitude must be a finite number"),
        (48.0, float("nan"), 0.0, "longitude must be a finite number"),
        (48.0, 2.0, float("inf"), "altitude must be a finite number"),
        (91.0, 2.0, 0.0, "latitude 91.0 deg is out of range"),
        (-90.5, 2.0, 0.0, "latitude -90.5 deg is out of range"),
        (48.0, 181.0, 0.0, "longitude 181.0 deg is out of range"),
    ],
)
def test_bad_geodetic_input_is_named(lat, lon, alt, message):
    with pytest.raises(GeodesyError, match=message):
        geodetic_to_enu(lat, lon, alt, ORIGIN)


def test_bad_origin_is_rejected():
    with pytest.raises(GeodesyError, match="latitude"):
        GeoOrigin(float("nan"), 0.0)
    with pytest.raises(GeodesyError, match="out of range"):
        GeoOrigin(100.0, 0.0)


def test_enu_input_shape_checked():
    with pytest.raises(GeodesyError, match="3 components"):
        enu_to_geodetic(np.zeros((4, 2)), ORIGIN)


def test_same_frame_is_one_horizontal_tolerance() -> None:
    from geoloc_ros.geo.enu import SAME_ORIGIN_TOLERANCE_M

    origin = GeoOrigin(48.8566, 2.3522, 35.0)
    # 1 m of latitude is about 9e-6 deg; altitude does not move the map frame's horizontal axes
    near = GeoOrigin(48.8566 + 0.5 * SAME_ORIGIN_TOLERANCE_M / 111_200.0, 2.3522, 80.0)
    far = GeoOrigin(48.8566, 2.3522 + 2.0 * SAME_ORIGIN_TOLERANCE_M / 73_300.0, 35.0)
    assert origin.horizontal_offset_m(near) == pytest.approx(0.5 * SAME_ORIGIN_TOLERANCE_M, rel=0.01)
    assert origin.same_frame(near) and near.same_frame(origin)
    assert origin.horizontal_offset_m(far) == pytest.approx(2.0 * SAME_ORIGIN_TOLERANCE_M, rel=0.01)
    assert not origin.same_frame(far)
