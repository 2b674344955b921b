"""Coordinate systems used in China: WGS84, GCJ-02 (AMap, WeChat) and BD-09 (Baidu).

Inputs arrive in any of the three (or in an EPSG CRS) and are stored as WGS84; metric work
happens in the UTM zone of the data. Every conversion is vectorised over numpy arrays and
also accepts plain scalars (then it returns plain floats).

GCJ-02 is the published "Mars coordinates" obfuscation (Krasovsky-ellipsoid offset of a few
hundred metres). Its forward formula is public; the inverse has no closed form, so
``gcj02_to_wgs84`` inverts it by fixed-point iteration to well below a millimetre. Outside
China GCJ-02 equals WGS84 (the standard ``out_of_china`` bounding-box rule). BD-09 is a
further published rotation/offset of GCJ-02; its inverse is iterated the same way.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any

import numpy as np
import pyproj

logger = logging.getLogger(__name__)

SUPPORTED_CRS = ("wgs84", "gcj02", "bd09", "EPSG:<code>")

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 algorithm.
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_BD_X_PI = np.pi * 3000.0 / 180.0

# Iterative inverses stop when the forward image is this close to the target (degrees).
# 1e-10 degree is about 0.01 mm.
_INVERSE_TOL_DEG = 1e-10
_INVERSE_MAX_ITER = 30

_ALIASES = {
    "wgs84": "wgs84",
    "wgs-84": "wgs84",
    "epsg:4326": "wgs84",
    "gcj02": "gcj02",
    "gcj-02": "gcj02",
    "bd09": "bd09",
    "bd-09": "bd09",
    "bd09ll": "bd09",
}


def _as_arrays(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    if lon_a.shape != lat_a.shape:
        raise ValueError(f"lon and lat shapes differ: {lon_a.shape} vs {lat_a.shape}")
    return lon_a, lat_a, lon_a.ndim == 0


def _out(lon: np.ndarray, lat: np.ndarray, scalar: bool) -> tuple[Any, Any]:
    if scalar:
        return float(lon), float(lat)
    return lon, lat


def out_of_china(lon: Any, lat: Any) -> Any:
    """True where the point is outside the GCJ-02 box (there GCJ-02 == WGS84)."""
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    mask = (lon_a < 72.004) | (lon_a > 137.8347) | (lat_a < 0.8293) | (lat_a > 55.8271)
    return bool(mask) if mask.ndim == 0 else mask


def _gcj02_delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 offset (dlon, dlat) in degrees at WGS84 (lon, lat); no China mask applied."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
    dlat = dlat + common
    dlat = dlat + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat = dlat + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
    dlon = dlon + common
    dlon = dlon + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon = dlon + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _KRASOVSKY_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_KRASOVSKY_A * (1.0 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_KRASOVSKY_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: Any, lat: Any) -> tuple[Any, Any]:
    """WGS84 -> GCJ-02 (identity outside China)."""
    lon_a, lat_a, scalar = _as_arrays(lon, lat)
    dlon, dlat = _gcj02_delta(lon_a, lat_a)
    outside = out_of_china(lon_a, lat_a)
    gcj_lon = np.where(outside, lon_a, lon_a + dlon)
    gcj_lat = np.where(outside, lat_a, lat_a + dlat)
    return _out(gcj_lon, gcj_lat, scalar)


def gcj02_to_wgs84(lon: Any, lat: Any) -> tuple[Any, Any]:
    """GCJ-02 -> WGS84 by fixed-point iteration of the forward transform (sub-mm accurate).

    The offset's derivative is ~1e-3, so each iteration gains about three digits.
    """
    lon_a, lat_a, scalar = _as_arrays(lon, lat)
    outside = out_of_china(lon_a, lat_a)
    dlon, dlat = _gcj02_delta(lon_a, lat_a)

    def forward(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = _gcj02_delta(x, y)
        return x + dx, y + dy

    w_lon, w_lat = _invert(forward, lon_a, lat_a, lon_a - dlon, lat_a - dlat, "gcj02_to_wgs84")
    w_lon = np.where(outside, lon_a, w_lon)
    w_lat = np.where(outside, lat_a, w_lat)
    return _out(w_lon, w_lat, scalar)


def _invert(
    forward: Any, lon: np.ndarray, lat: np.ndarray, x0: np.ndarray, y0: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Solve forward(x, y) = (lon, lat) by fixed-point iteration from (x0, y0).

    The shifts' derivatives are ~1e-3, so each iteration gains about three digits.
    """
    x, y = x0, y0
    for _ in range(_INVERSE_MAX_ITER):
        f_lon, f_lat = forward(x, y)
        err_lon = f_lon - lon
        err_lat = f_lat - lat
        x = x - err_lon
        y = y - err_lat
        finite = np.isfinite(err_lon) & np.isfinite(err_lat)
        if not finite.any() or (
            np.max(np.abs(np.where(finite, err_lon, 0.0))) < _INVERSE_TOL_DEG
            and np.max(np.abs(np.where(finite, err_lat, 0.0))) < _INVERSE_TOL_DEG
        ):
            break
    else:
        logger.warning("%s did not converge in %d iterations", name, _INVERSE_MAX_ITER)
    return x, y


def _gcj02_to_bd09_arrays(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _BD_X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _BD_X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def gcj02_to_bd09(lon: Any, lat: Any) -> tuple[Any, Any]:
    """GCJ-02 -> BD-09 (Baidu's published formula; applied everywhere, as Baidu does)."""
    lon_a, lat_a, scalar = _as_arrays(lon, lat)
    bd_lon, bd_lat = _gcj02_to_bd09_arrays(lon_a, lat_a)
    return _out(bd_lon, bd_lat, scalar)


def bd09_to_gcj02(lon: Any, lat: Any) -> tuple[Any, Any]:
    """BD-09 -> GCJ-02: the usual closed-form approximation refined by fixed-point iteration.

    The closed form alone is off by up to ~1 m; a few iterations bring it below 0.01 mm.
    """
    lon_a, lat_a, scalar = _as_arrays(lon, lat)
    x = lon_a - 0.0065
    y = lat_a - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _BD_X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _BD_X_PI)
    g_lon, g_lat = _invert(
        _gcj02_to_bd09_arrays, lon_a, lat_a, z * np.cos(theta), z * np.sin(theta), "bd09_to_gcj02"
    )
    return _out(g_lon, g_lat, scalar)


def wgs84_to_bd09(lon: Any, lat: Any) -> tuple[Any, Any]:
    """WGS84 -> BD-09 (via GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: Any, lat: Any) -> tuple[Any, Any]:
    """BD-09 -> WGS84 (via GCJ-02)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def _normalise_crs(crs: str) -> str:
    """'wgs84' | 'gcj02' | 'bd09' | 'EPSG:<code>' (validated); ValueError otherwise."""
    if not isinstance(crs, str):
        raise ValueError(f"unknown crs {crs!r}; supported: {', '.join(SUPPORTED_CRS)}")
    key = crs.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    if key.startswith("epsg:") and key[5:].isdigit():
        code = f"EPSG:{int(key[5:])}"
        try:
            _transformer_to_wgs84(code)
        except pyproj.exceptions.CRSError as exc:
            raise ValueError(f"unknown crs {crs!r}; supported: {', '.join(SUPPORTED_CRS)}") from exc
        return code
    raise ValueError(f"unknown crs {crs!r}; supported: {', '.join(SUPPORTED_CRS)}")


@lru_cache(maxsize=32)
def _transformer_to_wgs84(code: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(code, "EPSG:4326", always_xy=True)


@lru_cache(maxsize=32)
def _transformer_from_wgs84(code: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4326", code, always_xy=True)


def to_wgs84(lon: Any, lat: Any, crs: str) -> tuple[Any, Any]:
    """Convert (lon, lat) — or (x, y) for an EPSG CRS — given in ``crs`` to WGS84 lon/lat.

    ``crs`` is one of ``SUPPORTED_CRS`` (case-insensitive); anything else raises
    ValueError("unknown crs ...").
    """
    name = _normalise_crs(crs)
    if name == "wgs84":
        lon_a, lat_a, scalar = _as_arrays(lon, lat)
        return _out(lon_a.copy(), lat_a.copy(), scalar)
    if name == "gcj02":
        return gcj02_to_wgs84(lon, lat)
    if name == "bd09":
        return bd09_to_wgs84(lon, lat)
    x_a, y_a, scalar = _as_arrays(lon, lat)
    out_lon, out_lat = _transformer_to_wgs84(name).transform(x_a, y_a)
    return _out(
        np.asarray(out_lon, dtype=np.float64), np.asarray(out_lat, dtype=np.float64), scalar
    )


def from_wgs84(lon: Any, lat: Any, crs: str) -> tuple[Any, Any]:
    """Inverse of ``to_wgs84``: WGS84 lon/lat to ``crs`` (e.g. GCJ-02 for an AMap basemap)."""
    name = _normalise_crs(crs)
    if name == "wgs84":
        lon_a, lat_a, scalar = _as_arrays(lon, lat)
        return _out(lon_a.copy(), lat_a.copy(), scalar)
    if name == "gcj02":
        return wgs84_to_gcj02(lon, lat)
    if name == "bd09":
        return wgs84_to_bd09(lon, lat)
    lon_a, lat_a, scalar = _as_arrays(lon, lat)
    out_x, out_y = _transformer_from_wgs84(name).transform(lon_a, lat_a)
    return _out(np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64), scalar)


def _utm_zone(lon: float, lat: float) -> int:
    """UTM zone number including the Norway (32V) and Svalbard (31X-37X) exceptions."""
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat < 84.0 and 0.0 <= lon < 42.0:
        if lon < 9.0:
            return 31
        if lon < 21.0:
            return 33
        if lon < 33.0:
            return 35
        return 37
    return zone


def utm_epsg_for_lonlat(lon: Any, lat: Any) -> int:
    """EPSG code of the WGS84 UTM zone for the centre of the data.

    The centre is the median lon/lat of the finite inputs (robust to a stray far point).
    Northern zones are 326xx, southern 327xx: Chengdu (104.07 E, 30.66 N) is EPSG:32648,
    Helsinki (24.94 E, 60.17 N) EPSG:32635.
    """
    if isinstance(lon, float | int) and isinstance(lat, float | int):
        centre_lon, centre_lat = float(lon), float(lat)  # one point (the hot path): no arrays
        if not (math.isfinite(centre_lon) and math.isfinite(centre_lat)):
            raise ValueError("no finite coordinates to choose a UTM zone from")
    else:
        lon_a = np.asarray(lon, dtype=np.float64).ravel()
        lat_a = np.asarray(lat, dtype=np.float64).ravel()
        if lon_a.shape != lat_a.shape:
            raise ValueError(f"lon and lat shapes differ: {lon_a.shape} vs {lat_a.shape}")
        finite = np.isfinite(lon_a) & np.isfinite(lat_a)
        if not finite.any():
            raise ValueError("no finite coordinates to choose a UTM zone from")
        centre_lon = float(np.median(lon_a[finite]))
        centre_lat = float(np.median(lat_a[finite]))
    if not (-180.0 <= centre_lon <= 180.0 and -80.0 <= centre_lat <= 84.0):
        raise ValueError(
            f"centre ({centre_lon:.4f}, {centre_lat:.4f}) is outside the UTM domain "
            "(lon -180..180, lat -80..84); is the input lon/lat?"
        )
    zone = _utm_zone(centre_lon, centre_lat)
    return (32600 if centre_lat >= 0.0 else 32700) + zone


def utm_crs_for_lonlat(lon: Any, lat: Any) -> pyproj.CRS:
    """pyproj CRS of the WGS84 UTM zone for the centre of the data (see utm_epsg_for_lonlat)."""
    return pyproj.CRS.from_epsg(utm_epsg_for_lonlat(lon, lat))
