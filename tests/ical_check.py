"""Reads CAB's calendar feed with Python's `icalendar` package and checks it
against RFC 5545 and against what the API says of each change.

Run by tests/ical.sh against a demo board; needs CAB_URL, CAB_USERNAME and
CAB_PASSWORD (a person who may read every change).
"""

import datetime
import json
import os
import re
import sys
import urllib.error
import urllib.request

import icalendar

BASE = os.environ["CAB_URL"]


def fail(message):
    print(f"ical check failed: {message}", file=sys.stderr)
    sys.exit(1)


def call(method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def fetch(url):
    """The feed as a calendar application fetches it: no credentials."""
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def check_lines(raw):
    if not raw.endswith(b"\r\n"):
        fail("the feed does not end with CRLF")
    lines = raw[:-2].split(b"\r\n")
    for n, line in enumerate(lines, 1):
        if b"\n" in line or b"\r" in line:
            fail(f"line {n} has a bare line break: {line[:80]!r}")
        if len(line) > 75:
            fail(f"line {n} is {len(line)} octets long (at most 75): {line[:80]!r}")
        # A fold never splits a UTF-8 character: each physical line decodes.
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            fail(f"line {n} splits a UTF-8 character: {line!r}")
    return len(lines)


def utc(value):
    dt = value.dt
    if not isinstance(dt, datetime.datetime) or dt.tzinfo is None:
        fail(f"a time is not a UTC date-time: {value.to_ical()!r}")
    return dt.astimezone(datetime.timezone.utc)


def parse_time(s):
    """An API time at iCalendar's resolution: whole seconds."""
    return (
        datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        .astimezone(datetime.timezone.utc)
        .replace(microsecond=0)
    )


def main():
    status, _, body = call(
        "POST",
        "/api/v1/auth/token",
        body={"username": os.environ["CAB_USERNAME"], "password": os.environ["CAB_PASSWORD"]},
    )
    if status != 200:
        fail(f"sign-in answered {status}: {body[:200]!r}")
    token = json.loads(body)["access_token"]

    status, _, body = call("POST", "/api/v1/calendar/feeds", token, {"label": "CAB changes, ünïcode ✓"})
    if status != 201:
        fail(f"making a feed answered {status}: {body[:200]!r}")
    feed = json.loads(body)
    url = feed["url"]
    status, _, body = call("GET", "/api/v1/calendar/feeds", token)
    if status != 200 or url.split("/")[-1].encode() in body:
        fail("the list of feeds shows a feed's secret address")

    status, ctype, raw = fetch(url)
    if status != 200 or not ctype.startswith("text/calendar"):
        fail(f"the feed answered {status} {ctype}")
    physical = check_lines(raw)

    cal = icalendar.Calendar.from_ical(raw)
    if str(cal.get("VERSION")) != "2.0" or not str(cal.get("PRODID", "")):
        fail("VERSION or PRODID is missing")
    events = list(cal.walk("VEVENT"))
    changes = [e for e in events if str(e["UID"]).startswith("change-")]
    freezes = [e for e in events if str(e["UID"]).startswith("freeze-")]
    if not changes or not freezes:
        fail(f"{len(changes)} change windows and {len(freezes)} freezes; expected some of each")

    expected_status = {
        "approved": "CONFIRMED",
        "implementing": "CONFIRMED",
        "implemented": "CONFIRMED",
        "implementation_failed": "CONFIRMED",
        "closed": "CONFIRMED",
        "rejected": "CANCELLED",
        "withdrawn": "CANCELLED",
        "cancelled": "CANCELLED",
    }
    seen_status = set()
    for e in changes:
        for prop in ("UID", "DTSTAMP", "DTSTART", "DTEND", "SEQUENCE", "STATUS", "SUMMARY"):
            if prop not in e:
                fail(f"{e.get('UID')} has no {prop}")
        key = str(e["SUMMARY"]).split(" ", 1)[0]
        status, _, body = call("GET", f"/api/v1/changes/{key}", token)
        if status != 200:
            fail(f"{key} from the feed answered {status} in the API")
        change = json.loads(body)
        if str(e["UID"]) != f"change-{change['id']}@127.0.0.1":
            fail(f"{key}'s UID {e['UID']} is not its id")
        want = expected_status.get(change["state"], "TENTATIVE")
        if change["state"] == "closed":
            status, _, body = call("GET", f"/api/v1/changes/{change['id']}/review", token)
            if status != 200:
                fail(f"{key}'s review answered {status}")
            if json.loads(body)["closure"]["code"] == "not_implemented":
                want = "CANCELLED"  # it never ran
        # SEQUENCE grows with every revision and, within one, with the
        # status: tentative, confirmed, cancelled.
        sequence = change["revision"] * 3 + ["TENTATIVE", "CONFIRMED", "CANCELLED"].index(want)
        if int(e["SEQUENCE"]) != sequence:
            fail(f"{key}: SEQUENCE {e['SEQUENCE']} at revision {change['revision']}, {want}; expected {sequence}")
        if str(e["STATUS"]) != want:
            fail(f"{key} is {change['state']} but its STATUS is {e['STATUS']}, not {want}")
        seen_status.add(want)
        if utc(e["DTSTART"]) != parse_time(change["window"]["start"]):
            fail(f"{key}: DTSTART {e['DTSTART'].to_ical()!r} is not the window's start")
        if utc(e["DTEND"]) != parse_time(change["window"]["end"]):
            fail(f"{key}: DTEND {e['DTEND'].to_ical()!r} is not the window's end")
        if not str(e.get("URL", "")).endswith(f"/changes/{key}"):
            fail(f"{key}: URL {e.get('URL')} does not lead to the change")
    if seen_status != {"TENTATIVE", "CONFIRMED", "CANCELLED"}:
        fail(f"the demo feed should hold every status; it holds {sorted(seen_status)}")
    for e in freezes:
        if str(e.get("TRANSP")) != "TRANSPARENT" or not str(e["SUMMARY"]).startswith("Freeze"):
            fail(f"freeze {e['UID']} is not a transparent freeze event")
    # An X- property has no type the parser knows: read it as TEXT (RFC 5545
    # 3.3.11) from the unfolded text.
    unfolded = raw.decode("utf-8").replace("\r\n ", "")
    line = next(l for l in unfolded.split("\r\n") if l.startswith("X-WR-CALNAME:"))
    name = re.sub(
        r"\\([\\;,nN])",
        lambda m: "\n" if m.group(1) in "nN" else m.group(1),
        line.split(":", 1)[1],
    )
    if name != "CAB changes, ünïcode ✓":
        fail(f"the calendar's name came back as {name!r}")

    # Subscribed calendars match events by UID: the same on every fetch.
    _, _, again = fetch(url)
    uids = sorted(str(e["UID"]) for e in icalendar.Calendar.from_ical(again).walk("VEVENT"))
    if uids != sorted(str(e["UID"]) for e in events):
        fail("a second fetch named other events")

    status, _, _ = call("POST", f"/api/v1/calendar/feeds/{feed['id']}/revoke", token)
    if status != 200:
        fail(f"revoking the feed answered {status}")
    status, _, _ = fetch(url)
    if status != 404:
        fail(f"a revoked feed answered {status}, not 404")

    print(
        f"ical: {len(changes)} change windows ({', '.join(sorted(seen_status))}) and "
        f"{len(freezes)} freezes in {physical} lines, parsed by icalendar {icalendar.__version__}"
    )


if __name__ == "__main__":
    main()
