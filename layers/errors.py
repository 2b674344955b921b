"""One exception hierarchy for the whole product.

Every error carries a stable machine-readable ``code``, the HTTP ``status`` it maps to and
``details`` for clients. Messages are looked up by code in zh-CN or en, so a code never hides
inside a message string (unlike HOT Tasking Manager) and the web layer renders all errors with
one handler.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")

# code -> (zh-CN template, en template); templates use str.format with the error's details.
MESSAGES: dict[str, tuple[str, str]] = {
    "bad_request": ("请求无效：{reason}", "Bad request: {reason}"),
    "invalid_json": ("请求体不是有效的 JSON。", "The request body is not valid JSON."),
    "validation_failed": ("输入有误：{reason}", "Invalid input: {reason}"),
    "invalid_bbox": (
        "bbox 参数无效：{reason}。格式为 minLon,minLat,maxLon,maxLat。",
        "Invalid bbox: {reason}. Expected minLon,minLat,maxLon,maxLat.",
    ),
    "bbox_too_large": (
        "bbox 范围过大（{width}°×{height}°），每边最多 {max_deg}°。",
        "bbox too large ({width}°×{height}°); at most {max_deg}° per side.",
    ),
    "invalid_limit": ("limit 必须是 1 到 {max} 之间的整数。", "limit must be an integer 1–{max}."),
    "invalid_cursor": ("分页游标无效或已过期。", "The page cursor is invalid or expired."),
    "invalid_geometry": ("几何图形无效：{reason}", "Invalid geometry: {reason}"),
    "unknown_layer": (
        "未知图层“{layer}”。可用图层：{available}。",
        "Unknown layer '{layer}'. Available layers: {available}.",
    ),
    # importers (layers/importers)
    "import_not_found": ("找不到文件 {path}。", "File not found: {path}."),
    "import_format": (
        "不支持的文件类型“{suffix}”（{path}）。支持：{supported}。",
        "Unsupported file type '{suffix}' ({path}); supported: {supported}.",
    ),
    "import_empty": (
        "{path} 中没有可导入的内容：{reason}。",
        "Nothing to import in {path}: {reason}.",
    ),
    "import_corrupt": (
        "无法读取 {path}，文件可能已损坏：{reason}",
        "Cannot read {path}; the file looks corrupt: {reason}",
    ),
    "csv_no_lonlat": (
        "CSV 文件 {path} 没有可用的经纬度列：{reason}。现有列：{columns}。",
        "CSV file {path} has no usable longitude / latitude columns: {reason}. Columns: {columns}.",
    ),
    "import_coordinates_out_of_range": (
        "{path} 中 {share}% 的坐标超出经度 ±180°、纬度 ±90° 的范围（例如 {example}）；"
        "坐标系是否正确？请用 --crs 指定。",
        "{share}% of the coordinates in {path} are outside longitude ±180° / latitude ±90° "
        "(e.g. {example}); is the CRS right? Give it with --crs.",
    ),
    "latlon_swapped": (
        "{path} 的经纬度似乎写反了：{reason}。请交换经度、纬度列（--lon-col / --lat-col）或修正文件。",
        "Latitude and longitude look swapped in {path}: {reason}. Swap the columns "
        "(--lon-col / --lat-col) or fix the file.",
    ),
    "wrong_geometry_type": (
        "图层“{layer}”需要{expected}类几何，但 {path} 中是：{found}。",
        "Layer '{layer}' needs {expected} geometries but {path} holds {found}.",
    ),
    "missing_columns": (
        "图层“{layer}”需要列 {columns}；文件中的列：{available}。",
        "Layer '{layer}' needs the column {columns}; the file has: {available}.",
    ),
    "import_nothing_valid": (
        "{path} 中没有能导入图层“{layer}”的要素：{reasons}。",
        "Nothing in {path} can be imported into '{layer}': {reasons}.",
    ),
    "import_failed": (
        "导入失败，数据库未作任何改动：{reason}",
        "The import failed; the database was left unchanged: {reason}",
    ),
    "invalid_tile": ("瓦片坐标无效：{reason}", "Invalid tile address: {reason}"),
    "not_found": ("未找到所请求的资源。", "The requested resource was not found."),
    "method_not_allowed": ("不支持该请求方法。", "This method is not allowed here."),
    "unauthorized": ("请先登录或提供有效的访问令牌。", "Log in or provide a valid access token."),
    "invalid_credentials": ("用户名或密码错误。", "Wrong username or password."),
    "forbidden": ("您没有执行此操作的权限。", "You are not allowed to do this."),
    # login and sessions (layers/auth/login.py, layers/auth/sessions.py, web/csrf.py)
    "login_throttled": (
        "登录失败次数过多，请 {retry_after_s} 秒后再试。",
        "Too many failed logins; try again in {retry_after_s} s.",
    ),
    "csrf_failed": (
        "页面已过期或请求来源无法确认，请刷新页面后重试。",
        "The page has expired or the request's origin cannot be confirmed; reload and retry.",
    ),
    "wrong_password": ("当前密码不正确。", "The current password is wrong."),
    "passwords_differ": ("两次输入的新密码不一致。", "The two new passwords differ."),
    "password_too_short": (
        "密码至少需要 {min} 个字符。",
        "A password needs at least {min} characters.",
    ),
    # the loser of a race (layers.pipeline.runner): what it acted upon changed meanwhile
    "conflict": (
        "刚有他人改动了此项，当前状态为“{status}”；请刷新后再操作。",
        "Someone else changed this a moment ago; it is now '{status}'. Reload and try again.",
    ),
    "payload_too_large": (
        "请求体过大，最多 {limit_bytes} 字节。",
        "The request body is too large; the limit is {limit_bytes} bytes.",
    ),
    "rate_limited": ("请求过于频繁，请稍后再试。", "Too many requests; please try again later."),
    "db_unavailable": ("数据库暂时不可用。", "The database is unavailable."),
    "internal_error": ("服务器内部错误，已记录。", "Internal server error; it has been logged."),
    "user_exists": ("用户“{username}”已存在。", "User '{username}' already exists."),
    "unknown_user": ("用户“{username}”不存在。", "No user named '{username}'."),
    "unknown_role": (
        "未知角色“{role}”。可用角色：{available}。",
        "Unknown role '{role}'. Available roles: {available}.",
    ),
    "unknown_area": ("未知区域编码“{code}”。", "Unknown area code '{code}'."),
    "unknown_grid": ("未知网格编码“{code}”。", "Unknown grid code '{code}'."),
    # the pipeline (layers/requests, layers/volunteers)
    "missing_field": ("缺少必填字段：{field}", "Missing required field: {field}"),
    "invalid_field": ("字段 {field} 无效：{reason}", "Invalid field {field}: {reason}"),
    "invalid_coordinates": (
        "坐标 {field} 无效：{reason}。",
        "Invalid coordinate {field}: {reason}.",
    ),
    "coordinates_out_of_range": (
        "坐标超出范围（经度 {lon}，纬度 {lat}）：经度 −180..180，纬度 −90..90。",
        "Coordinates out of range (lon {lon}, lat {lat}): lon −180..180, lat −90..90.",
    ),
    "swapped_coordinates": (
        "经纬度可能填反了（lon={lon}, lat={lat}）：交换后位于辖区内。",
        "lon and lat look swapped (lon={lon}, lat={lat}): swapped, the point is inside.",
    ),
    "outside_jurisdiction": (
        "该位置（{lon}, {lat}）不在本辖区范围内，未受理。",
        "The location ({lon}, {lat}) is outside this jurisdiction; nothing was stored.",
    ),
    "unknown_category": (
        "未知诉求类别“{category}”。可用类别：{available}。",
        "Unknown category '{category}'. Available: {available}.",
    ),
    "unknown_crs": (
        "未知坐标系“{crs}”。可用：{available}。",
        "Unknown crs '{crs}'. Available: {available}.",
    ),
    "text_too_long": (
        "{field} 过长（{length} 字），最多 {max_chars} 字。",
        "{field} is too long ({length} characters); at most {max_chars}.",
    ),
    # service circles, coverage, nearest service points (layers/circles, layers/coverage)
    "unknown_venue_category": (
        "未知服务设施类别“{category}”。可用类别：{available}。",
        "Unknown venue category '{category}'. Available: {available}.",
    ),
    "unknown_tier": (
        "类别“{category}”没有生活圈层级“{tier}”。可用：{available}。",
        "Category '{category}' has no life-circle tier '{tier}'. Available: {available}.",
    ),
    "invalid_budget": (
        "步行预算 {budget} {unit} 无效：须大于 0 且不超过 {cap_m} 米。",
        "Invalid walking budget {budget} {unit}: it must be > 0 and at most {cap_m} m.",
    ),
    "too_far_from_network": (
        "该位置距最近的步行道路 {snap_m} 米，超过 {limit_m} 米的上限。",
        "The point is {snap_m} m from the nearest walkable path; the limit is {limit_m} m.",
    ),
    "no_walking_network": ("尚未导入步行路网。", "No walking network has been imported."),
    "venue_without_location": ("服务设施 {venue} 没有位置。", "Venue {venue} has no location."),
    "unknown_venue": ("未找到服务设施 {id}。", "No venue {id}."),
    "unknown_building": ("未知楼栋编码“{code}”。", "Unknown building code '{code}'."),
    "unknown_request": ("未找到诉求 {id}。", "No request {id}."),
    "unknown_ticket": ("查询码无效。", "Unknown ticket."),
    "unknown_action": (
        "未知操作“{action}”。可用操作：{available}。",
        "Unknown action '{action}'. Available: {available}.",
    ),
    "unknown_volunteer": ("未找到可用的志愿者 {id}。", "No active volunteer {id}."),
    "idempotency_conflict": (
        "该幂等键（Idempotency-Key）已用于内容不同的另一次提交；24 小时内一个键只对应一份内容。",
        "This Idempotency-Key was already used with a different body; for 24 h a key stands "
        "for one body only.",
    ),
    "weak_idempotency_key": (
        "幂等键（Idempotency-Key）太弱：按其写法最多 {bits} 位随机数，至少需要 128 位。"
        "请用 32 个以上十六进制字符，或 22 个以上 base64 / base64url 字符（A–Z a–z 0–9 + / - _），"
        "例如 16 个随机字节；带连字符的 UUID 最多 122 位随机数，不接受。",
        "Idempotency-Key too weak: as written it carries at most {bits} random bits; 128 are "
        "needed. Send 32 or more hex digits, or 22 or more base64 or base64url characters "
        "(A–Z a–z 0–9 + / - _), e.g. 16 random bytes; a hyphenated UUID carries at most 122 "
        "random bits and is refused.",
    ),
    "illegal_transition": (
        "当前状态“{status}”下不能执行“{action}”。允许的操作：{allowed}。",
        "'{action}' is not allowed in status '{status}'. Allowed: {allowed}.",
    ),
    "already_claimed": ("该诉求已被他人接单。", "Someone else has already claimed this request."),
    "not_offered": ("该诉求未派给您，不能接单。", "This request was not offered to you."),
    "not_a_volunteer": ("当前账号未注册为志愿者。", "This account is not a registered volunteer."),
    "load_limit_reached": (
        "已达到接单上限，请先办结手头的诉求。",
        "Load limit reached; resolve your open requests first.",
    ),
    "owned_by_another_level": (
        "该诉求现由{owner_level}负责办理，您可以查看，但不能再处理。",
        "This request is now owned at the {owner_level} level: you can read it but no longer act.",
    ),
    "offer_lapsed": (
        "该诉求的派单已失效（{reason}），不能再查看或接单。",
        "The offer of this request has lapsed ({reason}); it can no longer be read or claimed.",
    ),
    "same_target": (
        "诉求已在{target}手中，无需转派。",
        "The request is already with {target}; nothing to hand over.",
    ),
    "grid_out_of_scope": (
        "网格“{code}”不在您的管辖范围内，不能转派过去。",
        "Grid '{code}' is outside your scope; the request cannot be handed to it.",
    ),
    "volunteer_out_of_scope": (
        "志愿者 {id} 不在您的管辖范围内，不能转派。",
        "Volunteer {id} is outside your scope; the request cannot be handed to them.",
    ),
    "volunteer_lacks_skill": (
        "志愿者 {id} 不具备“{category}”类服务技能；如确需指派，请确认 override 并说明理由。",
        "Volunteer {id} lacks the '{category}' skill; confirm an override with a reason.",
    ),
    "volunteer_unavailable": (
        "志愿者 {id} 当前不在服务时间；如确需指派，请确认 override 并说明理由。",
        "Volunteer {id} is not available now; confirm an override with a reason.",
    ),
    "volunteer_at_load_limit": (
        "志愿者 {id} 已达接单上限（{active_load}/{load_limit}）；如确需指派，请确认 override"
        " 并说明理由。",
        "Volunteer {id} is at the load limit ({active_load}/{load_limit}); confirm an override"
        " with a reason.",
    ),
    "invalid_duplicate_target": (
        "不能标记为该诉求的重复（{reason}）：原诉求须在您的管辖范围和同一区内，且未关闭、驳回、撤回或标为重复。",
        "Cannot mark as a duplicate of that request ({reason}): the original must be in your"
        " scope and district, and not closed, rejected, withdrawn or a duplicate.",
    ),
    "cannot_escalate": (
        "已在最高层级（{owner_level}），无法继续上报。",
        "Already at the top level ({owner_level}); cannot escalate further.",
    ),
    "invalid_rating": (
        "评价须为 1 到 5 的整数（收到 {rating}）。",
        "Rating must be 1–5 (got {rating}).",
    ),
    "invalid_time": ("时间参数 {field} 无效：{value}", "Invalid time {field}: {value}"),
    "invalid_level": (
        "未知统计层级“{level}”。可用：{available}。",
        "Unknown level '{level}'. Available: {available}.",
    ),
    "invalid_availability": (
        "服务时间无效：{reason}",
        "Invalid availability: {reason}",
    ),
    "volunteer_exists": ("该账号已注册为志愿者。", "This account is already a volunteer."),
    "scope_mismatch": (
        "角色“{role}”需要绑定到{scope}。",
        "Role '{role}' must be bound to a {scope}.",
    ),
    # planner drafts (layers/drafts)
    "draft_not_found": (
        "草稿 {draft_id} 不存在或不属于您。",
        "Draft {draft_id} not found (or not yours).",
    ),
    "draft_closed": (
        "草稿 {draft_id} 状态为 {status}，不能再修改或发布。",
        "Draft {draft_id} is {status}; it can no longer be edited or published.",
    ),
    "draft_stale": (
        "草稿 {draft_id} 基于第 {base_generation} 版，但社区 {community_code} 的网格已在第"
        " {current_generation} 版更新；请基于当前版本新建草稿。",
        "Draft {draft_id} is based on generation {base_generation}, but community "
        "{community_code} changed in generation {current_generation}; open a new draft.",
    ),
    "draft_blocked": (
        "草稿 {draft_id} 有 {count} 个阻断性问题（{codes}），不能发布。",
        "Draft {draft_id} has {count} blocking findings ({codes}) and cannot be published.",
    ),
    "draft_grid_not_found": ("草稿中没有网格“{grid}”。", "The draft has no grid '{grid}'."),
    "unknown_op": (
        "未知编辑操作“{op}”。可用：{available}。",
        "Unknown edit '{op}'. Available: {available}.",
    ),
    "line_does_not_split": (
        "所画的线没有把网格分开（得到 {pieces} 块）；线须从边界一侧画到另一侧。",
        "The line does not cut the grid ({pieces} piece(s)); draw it from outline to outline.",
    ),
    "invalid_line": ("线无效：{reason}", "Invalid line: {reason}"),
    "grid_codes_exhausted": (
        "社区 {community_code} 的网格编号已用完（序号最多 999）。",
        "Community {community_code} has no free grid code left (sequences end at 999).",
    ),
    "not_adjacent": ("这些网格不相邻，不能合并或移动公共边界。", "These grids are not neighbours."),
    "merge_needs_two": (
        "合并至少需要两个网格（收到 {count} 个）。",
        "Merging needs two grids ({count} given).",
    ),
    "boundary_removes_grid": (
        "新边界会让其中一个网格消失；请改用合并。",
        "The new boundary would remove one of the grids; merge them instead.",
    ),
    "empty_after_clip": (
        "所画的网格与相邻网格重叠或在社区外，裁剪后为空。",
        "The drawn grid is empty once clipped to the community and its neighbours.",
    ),
    "empty_geometry": ("{what} 为空。", "The {what} is empty."),
    "invalid_mode": (
        "未知模式“{mode}”。可用：{allowed}。",
        "Unknown mode '{mode}'. Allowed: {allowed}.",
    ),
    "partition_failed": ("无法生成划分方案：{reason}", "No partition could be proposed: {reason}"),
    "upload_outside_community": (
        "上传的数据范围 {data_bounds} 与社区 {community} 的范围 {community_bounds} 不相交；"
        "坐标系是否正确（如 crs=gcj02 / bd09 / EPSG 代码）？",
        "The uploaded data {data_bounds} does not reach community {community} "
        "{community_bounds}; is the CRS right (crs=gcj02 / bd09 / an EPSG code)?",
    ),
    "unknown_generation": ("第 {generation} 版不存在。", "Generation {generation} does not exist."),
    "nothing_to_restore": (
        "第 {generation} 版之后没有社区的网格变化，无需恢复（当前第 {current_generation} 版）。",
        "No community changed after generation {generation} (current {current_generation}).",
    ),
    "restore_ambiguous": (
        "第 {generation} 版之后有多个社区变化（{communities}），请指定 community_code。",
        "Several communities changed after generation {generation} ({communities}); "
        "give community_code.",
    ),
    # public contacts (layers/contacts, issue 16)
    "consent_required": (
        "公开联系方式须经本人同意：请勾选同意（consent: true）后再发布。",
        "A public contact needs your consent: send consent: true to publish it.",
    ),
    "not_a_leader": (
        "只有网格长或楼栋长可以发布公开联系方式。",
        "Only a grid leader or a building leader may publish a public contact.",
    ),
    # configuration the service refuses to start without (issue 16)
    "secret_key_missing": (
        "未配置 MINQING_SECRET_KEY，服务拒绝启动（不使用任何默认密钥）。",
        "MINQING_SECRET_KEY is not set; the service refuses to start without a key of its own.",
    ),
    "unknown_db_role": (
        "数据库角色“{role}”不存在，无法授予应用权限。",
        "The database role '{role}' does not exist; the app's grants cannot be given.",
    ),
}


LEVEL_NAMES_ZH = {"grid": "网格", "community": "社区", "street": "街道", "district": "区"}


def message_for(code: str, locale: str, details: dict[str, Any] | None = None) -> str:
    """Return the human message for ``code`` in ``locale`` (falls back to zh-CN)."""
    zh, en = MESSAGES.get(code, MESSAGES["internal_error"])
    english = locale.lower().startswith("en")
    template = en if english else zh
    values = dict(details or {})
    if not english:  # owner levels by their Chinese names (网格 / 社区 / 街道 / 区)
        values.update(
            {k: LEVEL_NAMES_ZH.get(v, v) for k, v in values.items() if k.endswith("level")}
        )
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        logger.warning("message template for %s lacks details %s", code, details)
        return template


class MinqingError(Exception):
    """Base of every error a client may see; ``status`` is the HTTP status it maps to."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, code: str | None = None, /, **details: Any) -> None:
        if code is not None:
            self.code = code
        self.details = details
        super().__init__(message_for(self.code, "en", details))

    def message(self, locale: str = DEFAULT_LOCALE) -> str:
        return message_for(self.code, locale, self.details)

    def to_dict(self, locale: str = DEFAULT_LOCALE) -> dict[str, Any]:
        """The DESIGN §7 envelope body."""
        public = {k: v for k, v in self.details.items() if not k.startswith("_")}
        return {"error": {"code": self.code, "message": self.message(locale), "details": public}}


class BadRequest(MinqingError):
    status = 400
    code = "bad_request"


class Unauthorized(MinqingError):
    status = 401
    code = "unauthorized"


class Forbidden(MinqingError):
    status = 403
    code = "forbidden"


class NotFound(MinqingError):
    status = 404
    code = "not_found"


class MethodNotAllowed(MinqingError):
    status = 405
    code = "method_not_allowed"


class Conflict(MinqingError):
    status = 409
    code = "conflict"


class PayloadTooLarge(MinqingError):
    status = 413
    code = "payload_too_large"


class Unprocessable(MinqingError):
    status = 422
    code = "validation_failed"


class RateLimited(MinqingError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(MinqingError):
    status = 503
    code = "db_unavailable"


class InternalError(MinqingError):
    status = 500
    code = "internal_error"


class Misconfigured(MinqingError):
    """The deployment lacks something the service needs to run safely (not a client error)."""

    status = 500
    code = "secret_key_missing"
