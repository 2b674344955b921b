"""The JSON a page's script starts from (web/maps.py ``attach_script``) carries data (grid and
area names) inside a ``<script>``: no name may end that script or open a comment in it."""

from __future__ import annotations

import json
import re

from sqlalchemy import text

NAME = '</script><!--<script>"><img src=x onerror=alert(1)>&amp;'


def test_a_grid_name_cannot_end_or_comment_out_the_page_script(client, session):
    code = session.scalar(text("SELECT code FROM grids ORDER BY code LIMIT 1"))
    session.execute(
        text("UPDATE grids SET name = :n WHERE code = :c AND generation_high IS NULL"),
        {"n": NAME, "c": code},
    )
    html = client.get(f"/r?grid={code}").get_data(as_text=True)
    call = re.search(r"Minqing\.resident\(\w+, (\{.*\})\);", html)
    assert call is not None
    payload = call.group(1)
    # nothing in the JSON the HTML parser reads as markup: no "<", ">" nor "&"
    assert not set("<>&") & set(payload)
    assert json.loads(payload)["grid"] == {"code": code, "name": NAME}
    # the page's panel shows the name escaped, as text
    assert "&lt;/script&gt;&lt;!--&lt;script&gt;" in html
