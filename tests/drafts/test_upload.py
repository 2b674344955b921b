"""Replacing a draft from a file: formats, CRSs, and bad input explained, never half-applied."""

from __future__ import annotations

import io
import json
import zipfile

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import mapping, shape

from geo.crs import wgs84_to_bd09
from geo.validation import UtmProjector
from tests.drafts.conftest import community_geom, live_grids
from tests.drafts.test_drafts_api import codes_of, edit, finding_codes, grids_of, open_draft


def _fc(grids: dict, transform=None) -> dict:
    feats = []
    for code, (_, geom) in sorted(grids.items()):
        g = geom if transform is None else shapely.transform(geom, transform)
        feats.append(
            {
                "type": "Feature",
                "properties": {"code": code, "name": f"网格{code[-3:]}"},
                "geometry": mapping(g),
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def _upload(client, headers, draft_id, payload: bytes, filename: str, **form):
    data = {"file": (io.BytesIO(payload), filename), **form}
    return client.post(
        f"/api/v1/drafts/{draft_id}/upload",
        data=data,
        headers=headers,
        content_type="multipart/form-data",
    )


def _bd09(xy: np.ndarray) -> np.ndarray:
    lon, lat = wgs84_to_bd09(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def _same_draft(client, headers, draft_id, doc):
    now = client.get(f"/api/v1/drafts/{draft_id}", headers=headers).get_json()
    assert codes_of(now) == codes_of(doc)
    for code, f in grids_of(now).items():
        assert shape(f["geometry"]).equals(shape(grids_of(doc)[code]["geometry"]))


def test_geojson_in_bd09_is_converted_and_the_crs_matters(client, session, planner):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    live = live_grids(session)
    payload = json.dumps(_fc(live, _bd09)).encode()
    wrong = _upload(client, planner, draft_id, payload, "grids.geojson")
    # read as WGS84 the grids land ~600 m away, off the community: refused, CRS suggested
    assert wrong.status_code == 422
    assert wrong.get_json()["error"]["code"] == "upload_outside_community"
    assert "crs" in wrong.get_json()["error"]["message"]
    resp = _upload(client, planner, draft_id, payload, "grids.geojson", crs="bd09")
    assert resp.status_code == 200, resp.get_json()
    up = resp.get_json()
    assert up["edit"]["source_crs"] == "bd09" and up["edit"]["features"] == 5
    for code, f in grids_of(up).items():
        assert shape(f["geometry"]).hausdorff_distance(live[code][1]) < 1e-7
        assert f["properties"]["name"] == f"网格{code[-3:]}"
    assert up["validation"]["publishable"]


def test_geopackage_in_utm_and_zipped_shapefile(client, session, planner, tmp_path):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    live = live_grids(session)
    frame = gpd.GeoDataFrame(
        {"code": list(live)}, geometry=[g for _, g in live.values()], crs="EPSG:4326"
    ).to_crs("EPSG:32635")
    frame.to_file(tmp_path / "grids.gpkg", driver="GPKG")
    resp = _upload(client, planner, draft_id, (tmp_path / "grids.gpkg").read_bytes(), "grids.gpkg")
    assert resp.status_code == 200, resp.get_json()
    assert "32635" in resp.get_json()["edit"]["source_crs"]
    assert resp.get_json()["validation"]["publishable"]
    shp = tmp_path / "shp"
    shp.mkdir()
    frame.to_file(shp / "grids.shp")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in shp.iterdir():
            zf.write(f, f.name)
    resp = _upload(client, planner, draft_id, buf.getvalue(), "grids.zip")
    assert resp.status_code == 200, resp.get_json()
    assert (
        codes_of(resp.get_json()) == sorted(live) and resp.get_json()["validation"]["publishable"]
    )


def test_bad_files_are_explained_and_never_half_applied(client, session, planner, app):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    live = live_grids(session)

    def refused(resp, status, code):
        assert resp.status_code == status, resp.get_json()
        err = resp.get_json()["error"]
        assert err["code"] == code and err["message"]
        _same_draft(client, planner, draft_id, doc)
        return err

    swapped = json.dumps(_fc(live, lambda xy: xy[:, ::-1].copy())).encode()
    err = refused(
        _upload(client, planner, draft_id, swapped, "grids.geojson"), 422, "latlon_swapped"
    )
    assert "swapped" in err["message"] or "写反" in err["message"]
    proj = UtmProjector(community_geom(session))
    metres = json.dumps(_fc({c: (i, proj.to_utm(g)) for c, (i, g) in live.items()})).encode()
    refused(
        _upload(client, planner, draft_id, metres, "grids.geojson"),
        422,
        "import_coordinates_out_of_range",
    )
    ok = json.dumps(_fc(live)).encode()
    refused(
        _upload(client, planner, draft_id, ok, "grids.geojson", crs="EPSG:999999"),
        400,
        "unknown_crs",
    )
    refused(_upload(client, planner, draft_id, b"", "grids.geojson"), 400, "import_empty")
    empty_fc = json.dumps({"type": "FeatureCollection", "features": []}).encode()
    refused(_upload(client, planner, draft_id, empty_fc, "grids.geojson"), 400, "import_empty")
    refused(_upload(client, planner, draft_id, b"x,y\n1,2\n", "grids.csv"), 400, "import_format")
    app.config["DRAFT_UPLOAD_MAX_BYTES"] = 2000
    big = json.dumps(_fc(live)).encode()
    assert len(big) > 2000
    err = refused(
        _upload(client, planner, draft_id, big, "grids.geojson"), 413, "payload_too_large"
    )
    assert err["details"]["limit_bytes"] == 2000 and "2000" in err["message"]


def test_a_grid_spanning_two_communities_and_a_self_intersecting_polygon(client, session, planner):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    live = dict(live_grids(session))
    proj = UtmProjector(community_geom(session))
    reaches = [
        (
            code,
            other,
            proj.to_lonlat(proj.to_utm(g).buffer(60)).intersection(community_geom(session, other)),
        )
        for code, (_, g) in sorted(live.items())
        for other in ("990000001001", "990000001002", "990000002002")
    ]
    code1, other_code, reach = next(r for r in reaches if proj.to_utm(r[2]).area > 100)
    id1, g1 = live[code1]
    live[code1] = (id1, g1.union(reach))
    code3 = next(c for c in sorted(live) if c != code1)
    id3, g3 = live[code3]
    x0, y0, x1, y1 = g3.bounds
    live[code3] = (id3, shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)]))
    spanning = edit(client, planner, draft_id, {"op": "replace_upload", "geojson": _fc(live)})
    codes = finding_codes(spanning)
    assert not spanning["validation"]["publishable"]
    (outside,) = [
        f
        for f in spanning["validation"]["findings"]["features"]
        if f["properties"]["code"] == "outside_community"
    ]
    assert outside["properties"]["params"]["other_communities"] == [other_code]
    assert other_code in outside["properties"]["message"]
    (invalid,) = [
        f
        for f in spanning["validation"]["findings"]["features"]
        if f["properties"]["code"] == "invalid_geometry"
    ]
    assert "Self-intersection" in invalid["properties"]["params"]["reason"]
    assert shape(invalid["geometry"]).is_valid and "repair" in invalid["properties"]["message"]
    assert "invalid_geometry" in codes
    resp = client.post(f"/api/v1/drafts/{draft_id}/publish", headers=planner)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "draft_blocked"
    repaired = edit(client, planner, draft_id, {"op": "repair"})
    assert "invalid_geometry" not in finding_codes(repaired)
    assert repaired["edit"]["changed"] == [code3]
