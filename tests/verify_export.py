#!/usr/bin/env python3
"""Checks an NDJSON export of CAB's audit events, independently of CAB's
code: written from the README's "The NDJSON export, byte by byte" and
"Signed checkpoints" alone, with Python's standard library and the Ed25519
verification of RFC 8032 (section 6).

    python3 tests/verify_export.py EXPORT.ndjson 'NAME+KEYID+KEY' [MORE KEYS...]

Each key may also be a file holding keys, one a line. Exits 0 and prints
what it checked, or 1 with the first fault.
"""

import base64
import hashlib
import json
import sys

# --- Ed25519 verification, RFC 8032 section 6 ------------------------------

P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x = (a[1] - a[0]) * (b[1] - b[0]) % P
    y = (a[1] + a[0]) * (b[1] + b[0]) % P
    c = 2 * a[3] * b[3] * D % P
    d = 2 * a[2] * b[2] % P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decompress(s):
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def ed25519_verify(public, msg, sig):
    if len(public) != 32 or len(sig) != 64:
        return False
    a, r = _decompress(public), _decompress(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % Q
    return _equal(_mul(s, G), _add(r, _mul(h, a)))


# --- The export --------------------------------------------------------------


class Fault(Exception):
    pass


def parse_key(text):
    name, keyid, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if len(raw) != 33 or raw[0] != 1:
        raise Fault("the verifier key is not an Ed25519 key")
    public = raw[1:]
    expected = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]
    if bytes.fromhex(keyid) != expected:
        raise Fault("the verifier key's id does not match")
    return name, expected, public


def open_text(note, keys):
    """The signed text of a note, if one of the keys signed it."""
    text, _, signatures = note.partition("\n\n")
    text = (text + "\n").encode()
    found = False
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise Fault("a signature line does not start with an em dash")
        signer, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        for name, keyid, public in keys:
            if signer == name and blob[:4] == keyid:
                if not ed25519_verify(public, text, blob[4:]):
                    raise Fault("a note's signature does not verify")
                found = True
    if not found:
        raise Fault("a note carries no signature by the keys given")
    return text.decode()


def open_checkpoint(note, keys):
    lines = open_text(note, keys).split("\n")
    if not lines[1].isdigit():
        raise Fault("the checkpoint's second line is not a number")
    return lines[0], int(lines[1]), base64.b64decode(lines[2])


def open_export_note(note, keys):
    """The export's own note: seven lines, the first one fixed."""
    lines = open_text(note, keys).split("\n")
    if len(lines) != 8 or lines[7] != "":
        raise Fault("the export's note is not seven lines")
    if lines[0] != "cab audit export v1":
        raise Fault("the export's note is not the note of an export")
    fields = {}
    for line, name in zip(lines[1:7], ["origin", "trail", "filter", "rows", "sha256", "cut"]):
        if not line.startswith(name + " "):
            raise Fault("the export's note has no %s line" % name)
        fields[name] = line[len(name) + 1 :]
    return fields


def canonical_items(canonical):
    """The items of the canonical bytes: each a 4-byte big-endian length and
    its bytes; an optional item is a byte 0, or 1 followed by the item."""
    pos = 0

    def item():
        nonlocal pos
        n = int.from_bytes(canonical[pos : pos + 4], "big")
        value = canonical[pos + 4 : pos + 4 + n]
        if len(value) != n:
            raise Fault("canonical bytes cut short")
        pos += 4 + n
        return value

    def optional():
        nonlocal pos
        flag = canonical[pos]
        pos += 1
        return item() if flag == 1 else None

    tag, seq, time = item(), item(), item()
    actor_id, actor_username = optional(), optional()
    roles = [item() for _ in range(int(item()))]
    action, entity_type, entity_id = item(), item(), optional()
    payload, request_id, client_addr = item(), optional(), optional()
    if pos != len(canonical):
        raise Fault("canonical bytes run on")
    return {
        "tag": tag, "seq": seq, "occurred_at": time, "actor_id": actor_id,
        "actor_username": actor_username, "actor_roles": roles, "action": action,
        "entity_type": entity_type, "entity_id": entity_id, "payload": payload,
        "request_id": request_id, "client_addr": client_addr,
    }


def text_or_none(value):
    return None if value is None else value.encode()


def check_fields(e, canonical):
    """The event's fields are the ones hashed."""
    c = canonical_items(canonical)
    shown = {
        "tag": b"cab-audit-v1",
        "seq": str(e["seq"]).encode(),
        "occurred_at": e["occurred_at"].encode(),
        "actor_id": text_or_none(e["actor_id"]),
        "actor_username": text_or_none(e["actor_username"]),
        "actor_roles": [r.encode() for r in e["actor_roles"]],
        "action": e["action"].encode(),
        "entity_type": e["entity_type"].encode(),
        "entity_id": text_or_none(e["entity_id"]),
        "payload": json.dumps(
            e["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode(),
        "request_id": text_or_none(e["request_id"]),
        "client_addr": text_or_none(e["client_addr"]),
    }
    for name, value in shown.items():
        if c[name] != value:
            raise Fault("event %d: its %s is not the one hashed" % (e["seq"], name))


def _no_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise Fault("a line names a field twice")
    return dict(pairs)


def _whole(text):
    if text.startswith("-0"):
        raise Fault("a number is written -0")
    return int(text)


def _not_whole(text):
    raise Fault("a number is not whole: %s" % text)


def loads(raw):
    """A line of the export: JSON with each field once and numbers whole
    (CAB writes no other), read strictly so that what is checked is what
    the file says."""
    return json.loads(
        raw,
        object_pairs_hook=_no_duplicates,
        parse_int=_whole,
        parse_float=_not_whole,
        parse_constant=_not_whole,
    )


def read_keys(given):
    keys = []
    for text in given:
        if "+" not in text:
            with open(text) as f:
                keys += [parse_key(l) for l in f.read().splitlines() if l.strip()]
        else:
            keys.append(parse_key(text))
    return keys


def verify(path, key_texts):
    keys = read_keys(key_texts)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines[-1] != b"":
        raise Fault("the file does not end with a newline")
    lines = [line + b"\n" for line in lines[:-1]]
    header = loads(lines[0])["export"]
    if header["trail"] != "events":
        raise Fault("not an export of the events")
    whole = header["filter"] == {}
    trailer = loads(lines[-1])["trailer"]
    events = lines[1:-1]
    if trailer["rows"] != len(events):
        raise Fault("the trailer's row count differs")
    if trailer["sha256"] != hashlib.sha256(b"".join(lines[:-1])).hexdigest():
        raise Fault("the trailer's SHA-256 differs")
    prev, seq = bytes(32), 0
    for raw in events:
        e = loads(raw)
        prev_hash, hash_ = bytes.fromhex(e["prev_hash"]), bytes.fromhex(e["hash"])
        canonical = base64.b64decode(e["canonical"])
        if hashlib.sha256(prev_hash + canonical).digest() != hash_:
            raise Fault("event %d: its hash does not match" % e["seq"])
        check_fields(e, canonical)
        if whole:
            if e["seq"] != seq + 1 or prev_hash != prev:
                raise Fault("event %d does not follow event %d" % (e["seq"], seq))
        prev, seq = hash_, e["seq"]
    cp = trailer["checkpoint"]
    origin, signed_seq, signed_hash = open_checkpoint(cp["note"], keys)
    if (signed_seq, signed_hash.hex()) != (cp["seq"], cp["hash"]):
        raise Fault("the trailer's head differs from the signed checkpoint")
    if trailer.get("export_note") is None:
        raise Fault("the trailer carries no signed note of the export")
    note = open_export_note(trailer["export_note"], keys)
    said = {
        "origin": origin,
        "trail": "events",
        "filter": json.dumps(
            header["filter"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ),
        "rows": str(len(events)),
        "sha256": hashlib.sha256(b"".join(lines[:-1])).hexdigest(),
        "cut": "%d %s" % (signed_seq, signed_hash.hex()),
    }
    for name, value in said.items():
        if note[name] != value:
            raise Fault("the export's note says another %s than the file" % name)
    if whole and (signed_seq, signed_hash) != (seq, prev):
        raise Fault("the chain does not end at the signed checkpoint")
    return len(events), signed_seq, whole


if __name__ == "__main__":
    try:
        rows, at, whole = verify(sys.argv[1], sys.argv[2:])
    except (Fault, KeyError, ValueError, IndexError, TypeError, AttributeError, OSError) as fault:
        print("does not verify: %s" % fault)
        sys.exit(1)
    print(
        "verified: %d events%s, signed checkpoint at event %d, the export signed as a whole"
        % (rows, ", chain intact" if whole else ", exactly those exported for the filter", at)
    )
