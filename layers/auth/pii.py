"""Masking of personal data (names, phones) for roles that do not need it."""

from __future__ import annotations


def mask_name(name: str | None) -> str | None:
    """Keep the family name (first character): 张三丰 → 张**, Li Wei → L*****."""
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str | None) -> str | None:
    """Keep the first 3 and last 4 digits of a mobile number: 13812345678 → 138****5678."""
    if not phone:
        return phone
    digits = phone.strip()
    if len(digits) <= 4:
        return "*" * len(digits)
    head = digits[:3] if len(digits) >= 11 else ""
    return head + "*" * (len(digits) - len(head) - 4) + digits[-4:]
