"""Drafts over the demo district through the API: edits, validation, impact, publish, undo."""

from __future__ import annotations

import shapely
from shapely.geometry import mapping, shape

from geo.validation import UtmProjector
from tests.drafts.conftest import (
    COMMUNITY,
    DEMO_PASSWORD,
    community_geom,
    live_grids,
    split_line_through,
)
from tests.factories import token


def open_draft(client, headers, code=COMMUNITY):
    resp = client.post("/api/v1/drafts", json={"community_code": code}, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def edit(client, headers, draft_id, body, status=200):
    resp = client.post(f"/api/v1/drafts/{draft_id}/edits", json=body, headers=headers)
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()


def grids_of(doc):
    return {f["properties"]["code"]: f for f in doc["grids"]["features"]}


def codes_of(doc):
    return sorted(grids_of(doc))


def finding_codes(doc):
    return [f["properties"]["code"] for f in doc["validation"]["findings"]["features"]]


def test_a_draft_copies_the_live_rows_and_is_private(client, session, planner):
    doc = open_draft(client, planner)
    live = live_grids(session)
    assert codes_of(doc) == sorted(live)
    assert doc["draft"]["base_generation"] == 1 and doc["draft"]["status"] == "open"
    assert doc["validation"]["publishable"] is True and doc["validation"]["blocking"] == 0
    for code, feat in grids_of(doc).items():
        assert shape(feat["geometry"]).equals(live[code][1])
    draft_id = doc["draft"]["id"]
    admin = token(client, "admin", DEMO_PASSWORD)
    resp = client.get(f"/api/v1/drafts/{draft_id}", headers=admin)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "draft_not_found"
    leader = token(client, "leader1", DEMO_PASSWORD)
    assert client.get(f"/api/v1/drafts/{draft_id}", headers=leader).status_code == 403
    assert client.post("/api/v1/drafts", json={"community_code": COMMUNITY}).status_code == 401
    listed = client.get("/api/v1/drafts", headers=planner).get_json()["drafts"]
    assert [d["id"] for d in listed] == [draft_id]
    resp = client.post("/api/v1/drafts", json={"community_code": "990000009009"}, headers=planner)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_area"


def test_split_keeps_households_and_gives_the_new_piece_the_next_code(client, session, planner):
    doc = open_draft(client, planner)
    proj = UtmProjector(community_geom(session))
    target = "990000002001005"
    line = split_line_through(live_grids(session)[target][1], proj)
    after = edit(
        client, planner, doc["draft"]["id"], {"op": "split", "grid": target, "line": mapping(line)}
    )
    assert after["edit"]["created"] == ["990000002001006"]
    before_g, after_g = grids_of(doc), grids_of(after)
    assert len(after_g) == 6
    total = before_g[target]["properties"]["households"]
    assert (
        after_g[target]["properties"]["households"]
        + after_g["990000002001006"]["properties"]["households"]
        == total
    )
    a = shape(after_g[target]["geometry"]).union(shape(after_g["990000002001006"]["geometry"]))
    assert proj.to_utm(a.symmetric_difference(shape(before_g[target]["geometry"]))).area < 1.0
    assert after["validation"]["blocking"] == 0


def test_merge_and_move_boundary(client, session, planner):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    proj = UtmProjector(community_geom(session))
    a, b = "990000002001004", "990000002001005"
    live = live_grids(session)
    au, bu = proj.to_utm(live[a][1]), proj.to_utm(live[b][1])
    union = au.union(bu)
    x0, _, x1, _ = union.bounds
    y = 6672330.0  # across both grids: their new border runs east-west here
    line = proj.to_lonlat(shapely.LineString([(x0 - 10, y), (x1 + 10, y)]))
    moved = edit(
        client, planner, draft_id, {"op": "move_boundary", "grids": [a, b], "line": mapping(line)}
    )
    g = grids_of(moved)
    na, nb = proj.to_utm(shape(g[a]["geometry"])), proj.to_utm(shape(g[b]["geometry"]))
    assert abs(na.area - au.area) > 100 and abs(nb.area - bu.area) > 100
    assert abs(na.area + nb.area - union.area) < 1.0 and na.intersection(nb).area < 0.01
    for code in ("990000002001001", "990000002001002", "990000002001003"):
        assert shape(g[code]["geometry"]).equals(live[code][1])  # neighbours untouched
    assert moved["validation"]["blocking"] == 0
    hh = g[a]["properties"]["households"] + g[b]["properties"]["households"]
    merged = edit(client, planner, draft_id, {"op": "merge", "grids": [b, a]})
    m = grids_of(merged)
    assert sorted(m) == ["990000002001001", "990000002001002", "990000002001003", a]
    assert m[a]["properties"]["households"] == hh
    assert merged["edit"]["removed"] == [b] and merged["validation"]["blocking"] == 0
    bad = client.post(
        f"/api/v1/drafts/{draft_id}/edits",
        json={"op": "merge", "grids": ["990000002001001", "990000002001004"]},
        headers=planner,
    )
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "not_adjacent"


def test_draw_carve_clip_rename_and_a_self_intersecting_polygon(client, session, planner):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    proj = UtmProjector(community_geom(session))
    g3 = proj.to_utm(live_grids(session)["990000002001003"][1])
    c = g3.representative_point()
    square = proj.to_lonlat(shapely.box(c.x - 40, c.y - 40, c.x + 40, c.y + 40))
    clipped = client.post(
        f"/api/v1/drafts/{draft_id}/edits",
        json={"op": "draw", "geometry": mapping(square)},
        headers=planner,
    )
    assert clipped.status_code == 422 and clipped.get_json()["error"]["code"] == "empty_after_clip"
    bowtie = proj.to_lonlat(
        shapely.Polygon(
            [(c.x - 40, c.y - 40), (c.x + 40, c.y + 40), (c.x + 40, c.y - 40), (c.x - 40, c.y + 40)]
        )
    )
    resp = client.post(
        f"/api/v1/drafts/{draft_id}/edits",
        json={"op": "draw", "mode": "carve", "geometry": mapping(bowtie)},
        headers=planner,
    )
    err = resp.get_json()["error"]
    assert resp.status_code == 422 and err["code"] == "invalid_geometry"
    assert "Self-intersection" in err["details"]["geos_reason"] and "repair" in err["message"]
    assert shape(err["details"]["repair"]).is_valid
    assert codes_of(
        client.get(f"/api/v1/drafts/{draft_id}", headers=planner).get_json()
    ) == codes_of(doc)
    carved = edit(
        client,
        planner,
        draft_id,
        {"op": "draw", "mode": "carve", "geometry": mapping(bowtie), "repair": True},
    )
    g = grids_of(carved)
    assert carved["edit"]["created"] == ["990000002001006"]
    new_area = proj.to_utm(shape(g["990000002001006"]["geometry"])).area
    assert abs(new_area - 3200) < 5  # the two triangles make_valid keeps
    assert carved["validation"]["blocking"] == 0
    renamed = edit(
        client,
        planner,
        draft_id,
        {"op": "rename", "grid": "990000002001006", "code": "99000000200100X"},
    )
    assert "code_malformed" in finding_codes(renamed) and not renamed["validation"]["publishable"]
    fixed = edit(client, planner, draft_id, {"op": "renumber", "only_missing": True})
    assert fixed["validation"]["publishable"] and "990000002001006" in codes_of(fixed)
    assert (
        client.post(
            f"/api/v1/drafts/{draft_id}/edits", json={"op": "explode"}, headers=planner
        ).get_json()["error"]["code"]
        == "unknown_op"
    )


def test_propose_fills_the_draft_from_the_partitioner(client, planner):
    doc = open_draft(client, planner)
    proposed = edit(
        client,
        planner,
        doc["draft"]["id"],
        {"op": "propose", "households_min": 300, "households_max": 500},
    )
    codes = codes_of(proposed)
    assert codes[0] == "990000002001001" and len(codes) >= 4
    assert sum(f["properties"]["households"] for f in proposed["grids"]["features"]) == sum(
        f["properties"]["households"] for f in doc["grids"]["features"]
    )
    assert proposed["validation"]["blocking"] == 0
