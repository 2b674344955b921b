"""Locale negotiation and the UI strings (zh-CN first, English available)."""

from __future__ import annotations

import logging

from flask import request

logger = logging.getLogger(__name__)

SUPPORTED = ("zh-CN", "en")

UI: dict[str, tuple[str, str]] = {
    "app_name": ("民情 · 网格化服务地图", "Minqing · grid service map"),
    "district_map": ("辖区地图", "District map"),
    "grids": ("网格", "Grids"),
    "buildings": ("楼栋", "Buildings"),
    "venues": ("服务阵地", "Service points"),
    "households": ("户数", "Households"),
    "code": ("编码", "Code"),
    "name": ("名称", "Name"),
    "category": ("类别", "Category"),
    "levels": ("层数", "Levels"),
    "estimated": ("估算", "estimated"),
    "community": ("社区", "Community"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "language": ("English", "中文"),
    "loading": ("加载中…", "Loading…"),
    "no_data": ("暂无数据", "No data yet"),
    "zoom_in": ("放大后显示", "Zoom in to see"),
}


def negotiate_locale(default: str = "zh-CN") -> str:
    """?lang= beats the ``lang`` cookie beats Accept-Language; zh-CN by default."""
    wanted = request.args.get("lang") or request.cookies.get("lang")
    if wanted:
        return "en" if wanted.lower().startswith("en") else "zh-CN"
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"], default=default)
    return "en" if best and best.startswith("en") else "zh-CN"


def t(key: str, locale: str) -> str:
    zh, en = UI[key]
    return en if locale == "en" else zh


def strings(locale: str) -> dict[str, str]:
    return {k: t(k, locale) for k in UI}
