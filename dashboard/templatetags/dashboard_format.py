from django import template

register = template.Library()


@register.filter
def pct(value) -> str:
    return "" if value is None or value == "" else f"{100 * float(value):.1f}%"


@register.filter
def num(value) -> str:
    return "" if value is None or value == "" else f"{float(value):.4f}"


@register.filter(name="bytes")
def human_bytes(value) -> str:
    if value is None or value == "":
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return ""
