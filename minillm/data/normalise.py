"""Steps 1-2 of cleaning: normalise the text, scrub personal data (PII).

Both edit one document without looking at any other, and both are
idempotent: normalising or scrubbing their own output changes nothing.
"""
import ipaddress
import re
import unicodedata

from minillm.data.report import text_bytes


def normalise(text):
    """NFC Unicode, "\\n" line ends, no byte-order marks (U+FEFF), no trailing spaces or blank end lines."""
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


# ------------------------------------------------------------- 2. scrub PII
# Each pattern finds candidates; a check function rejects look-alikes
# (an IPv4 octet above 255, a phone with too few digits). Placeholders
# contain no digit, "@" or ":", so scrubbing scrubbed text changes nothing.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f.]*(?::[0-9A-Fa-f.]*){2,}(?![\w:])")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}"    # North America: (555) 123-4567
    r"|\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,7})){2,6}"            # international: +44 20 7946 0958
    r")(?!\w)")


def _ipv6(match):
    core = match.group().rstrip(".")      # a sentence may end right after the address
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        return None
    return "<IP>" + match.group()[len(core):] if core != "::" else None


def _ipv4(match):
    return "<IP>" if all(int(part) <= 255 for part in match.group().split(".")) else None


def _phone(match):
    return "<PHONE>" if 7 <= sum(c.isdigit() for c in match.group()) <= 15 else None


# (report reason, a quick test that every match passes so that most text can
#  skip the slower pattern, the pattern, the check)
_PII = (("pii_email", re.compile("@"), _EMAIL, lambda match: "<EMAIL>"),
        ("pii_ip", re.compile(":"), _IPV6, _ipv6),
        ("pii_ip", re.compile(r"\d\.\d"), _IPV4, _ipv4),
        ("pii_phone", re.compile(r"\d"), _PHONE, _phone))


def scrub_pii(text, report=None):
    """Replace e-mail addresses, IP addresses (v6, v4) and phone numbers by placeholders."""
    for reason, quick, pattern, check in _PII:
        if not quick.search(text):
            continue
        def replace(match):
            placeholder = check(match)
            if placeholder is None:
                return match.group()
            if report is not None:
                report.add(reason, 1, text_bytes(match.group()) - text_bytes(placeholder), placeholder)
            return placeholder
        text = pattern.sub(replace, text)
    return text
