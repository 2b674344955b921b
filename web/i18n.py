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
    "card_title": ("民情服务卡", "Community service card"),
    "card_scan": ("扫码查找附近服务、提交诉求", "Scan to find services nearby and make a request"),
    "grid_code": ("网格编码", "Grid code"),
    "grid_leader": ("网格长", "Grid leader"),
    "print": ("打印", "Print"),
    "resident_title": ("居民服务", "Resident services"),
    "leader_title": ("网格长工作台", "Grid leader's map"),
    "volunteer_title": ("志愿者接单", "Volunteer"),
    "overdue_only": ("只看超期", "Overdue only"),
    "overdue": ("超期", "OVERDUE"),
    "dispatch": ("派给志愿者", "Dispatch"),
    "reassign_grid": ("转其他网格", "To grid"),
    "resolve_note": ("办理情况", "What was done"),
    "assignee": ("承办人", "Assignee"),
    "building_leader": ("楼栋长", "Building leader"),
    "phone": ("电话", "Phone"),
    "circles": ("15分钟生活圈", "15-minute circles"),
    "volunteers": ("志愿者", "Volunteers"),
    "skills": ("技能", "Skills"),
    "load": ("在办", "Load"),
    "load_limit": ("上限", "Limit"),
    "points": ("正能量值", "Points"),
    "tier": ("层级", "Tier"),
    "my_work": ("我的在办", "My work"),
    "offered_to_me": ("待接单（按距离）", "Offered to me (nearest first)"),
    "history": ("办结记录", "History"),
    "my_home": ("我的住址", "My home"),
    "walking": ("步行", "walking"),
    "where_am_i": ("定位我", "Where am I"),
    "pin_hint": ("拖动红色图钉到您的位置", "Drag the red pin to where you are"),
    "nearest": ("附近服务点", "Service points nearby"),
    "walk_min": ("步行约 {m} 分钟", "about {m} min walk"),
    "my_circle": ("我的15分钟生活圈", "My 15-minute circle"),
    "no_nearest": ("附近暂无此类服务点", "No such service point nearby"),
    "submit_request": ("提交诉求", "Make a request"),
    "request_category": ("诉求类别", "Category"),
    "request_text": ("诉求内容", "What do you need?"),
    "contact_name": ("联系人（选填）", "Your name (optional)"),
    "contact_phone": ("联系电话（选填）", "Phone (optional)"),
    "submit": ("提交", "Submit"),
    "submitting": ("提交中…", "Submitting…"),
    "ticket": ("诉求查询", "Your request"),
    "request_number": ("诉求编号", "Request number"),
    "status": ("状态", "Status"),
    "deadline": ("办理时限", "Deadline"),
    "timeline": ("办理进度", "Timeline"),
    "rate": ("评价", "Rate"),
    "rating_comment": ("评价意见（选填）", "Comment (optional)"),
    "your_rating": ("您的评价", "Your rating"),
    "withdraw": ("撤回诉求", "Withdraw"),
    "keep_ticket": (
        "请保存本页链接，凭查询码跟踪办理进度。",
        "Keep this page's link: it is your ticket to follow the request.",
    ),
    "status_submitted": ("已提交", "Submitted"),
    "status_triage": ("待分派", "In triage"),
    "status_assigned": ("已派单", "Assigned"),
    "status_claimed": ("已接单", "Claimed"),
    "status_in_progress": ("办理中", "In progress"),
    "status_resolved": ("已办结", "Resolved"),
    "status_rated": ("已评价", "Rated"),
    "status_closed": ("已关闭", "Closed"),
    "status_rejected": ("不予受理", "Rejected"),
    "status_duplicate": ("重复诉求", "Duplicate"),
    "status_withdrawn": ("已撤回", "Withdrawn"),
    "action_submit": ("提交诉求", "Submitted"),
    "action_assign": ("派单到网格", "Sent to the grid"),
    "action_triage": ("转社区分派", "Sent to the community for triage"),
    "action_claim": ("志愿者接单", "Claimed by a volunteer"),
    "action_start": ("开始办理", "Work started"),
    "action_resolve": ("办结", "Resolved"),
    "action_rate": ("居民评价", "Rated"),
    "action_close": ("关闭", "Closed"),
    "action_auto_close": ("超期未评价自动关闭", "Closed automatically (not rated)"),
    "action_auto_closed": ("超期未评价自动关闭", "Closed automatically (not rated)"),
    "action_reopen": ("重新办理", "Reopened"),
    "action_reassign": ("改派", "Reassigned"),
    "action_escalate": ("上报上级", "Escalated"),
    "action_withdraw": ("居民撤回", "Withdrawn"),
    "action_reject": ("不予受理", "Rejected"),
    "action_mark_duplicate": ("标记为重复", "Marked duplicate"),
    "action_rehome": ("网格调整后转入新网格", "Moved to a new grid after a redraw"),
    # staff pages (web/staff.py): triage inbox and the dashboard (党建地图)
    "staff_inbox": ("分派与上报", "Triage & escalations"),
    "staff_dashboard": ("党建地图", "Dashboard"),
    "staff_requests": ("诉求", "Requests"),
    "staff_scope": ("管辖范围", "Scope"),
    "staff_empty": ("本级暂无待办诉求", "Nothing waiting at your level"),
    "staff_count": ("共 {n} 件，超期 {o} 件", "{n} waiting, {o} overdue"),
    "staff_filter_all": ("全部", "All"),
    "staff_filter_triage": ("待分派", "Triage"),
    "staff_filter_overdue": ("已超期", "Overdue"),
    "staff_overdue": ("超期", "Overdue"),
    "staff_owner_level": ("责任层级", "Owner level"),
    "level_grid": ("网格", "Grid"),
    "level_community": ("社区", "Community"),
    "level_street": ("街道", "Street"),
    "level_district": ("区", "District"),
    "staff_action": ("处理", "Action"),
    "staff_do": ("执行", "Apply"),
    "staff_working": ("处理中…", "Working…"),
    "staff_done": ("已处理：{n}", "Done: {n}"),
    "staff_left_inbox": ("{n} 已移出本级待办", "{n} has left your inbox"),
    "staff_target_grid": ("目标网格", "Grid"),
    "staff_note": ("备注", "Note"),
    "staff_reason": ("理由（必填）", "Reason (required)"),
    "staff_resolution": ("办理结果（必填）", "What was done (required)"),
    "staff_duplicate_of": ("重复于（诉求编号）", "Duplicate of (request number)"),
    "staff_read_only": ("只读：规划人员不处理诉求", "Read only: planners do not act on requests"),
    "staff_session_expired": ("登录已过期，正在跳转登录…", "Session expired, going to log in…"),
    "staff_draft_restored": ("已恢复未提交的内容", "Your unsent note was restored"),
    "staff_contact": ("联系人", "Contact"),
    "staff_created": ("提交时间", "Received"),
    "staff_location": ("位置", "Location"),
    "staff_no_grid": ("不在任何网格（待分派）", "In no grid (triage)"),
    "do_assign": ("派单到网格", "Assign to a grid"),
    "do_reassign": ("改派其他网格", "Reassign to another grid"),
    "do_escalate": ("上报上级", "Escalate"),
    "do_reject": ("不予受理", "Reject"),
    "do_mark_duplicate": ("标记为重复", "Mark duplicate"),
    "do_resolve": ("直接办结", "Resolve"),
    "do_reopen": ("重新办理", "Reopen"),
    "do_start": ("开始办理", "Start"),
    "dash_level": ("统计单元", "Units"),
    "dash_metric": ("指标", "Measure"),
    "dash_period": ("时间段", "Period"),
    "dash_from": ("起", "From"),
    "dash_to": ("止", "To"),
    "dash_apply": ("应用", "Apply"),
    "dash_heat": ("诉求热力图", "Request heat map"),
    "dash_heat_count": ("热力点 {n} 个", "{n} points"),
    "dash_table": ("指标明细", "Figures"),
    "dash_csv": ("导出 CSV", "Export CSV"),
    "dash_no_data": ("无数据", "No data"),
    "dash_coverage_off": (
        "服务覆盖率需先构建服务圈（接口未启用）",
        "Service coverage needs the service circles (API not available yet)",
    ),
    "metric_received": ("受理数", "Received"),
    "metric_closed": ("结案数", "Closed"),
    "metric_closure_rate": ("结案率", "Closure rate"),
    "metric_resolved_on_time": ("按期办结数", "Resolved on time"),
    "metric_on_time_rate": ("按期结案率", "On-time closure rate"),
    "metric_mean_rating": ("平均评分", "Mean rating"),
    "metric_rated": ("评价数", "Rated"),
    "metric_open_backlog": ("未结诉求", "Open requests"),
    "metric_overdue": ("超期数", "Overdue"),
    "metric_coverage": ("服务覆盖率", "Service coverage"),
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


def category_name(code: str | None, locale: str) -> str | None:
    """The request category's name in ``locale`` (the code itself if unknown)."""
    from data.catalogues import request_categories

    for c in request_categories():
        if c.code == code:
            return c.name_en if locale == "en" else c.name_zh
    return code
