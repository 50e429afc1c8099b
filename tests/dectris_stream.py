"""Test helpers: a REST client and an independent decoder of DECTRIS streams V1 and V2.

Written for the tests from the public format descriptions, with third-party decoders
(`dectris.compression`, `lz4.block`, `cbor2`), not with ricom's own client code, so
that the simulator's encoder is checked against something it does not share code with.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np


def rest(sim, method: str, path: str, value=None, raw=None):
    """``(status, body)`` of one REST request (body JSON-decoded when it is JSON)."""
    data = raw if raw is not None else (None if value is None else json.dumps({"value": value}).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{sim.api_port}/{path.lstrip('/')}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    return status, (json.loads(body) if "json" in ctype else body.decode())


def det(sim, key: str, value=None):
    """GET (value None) or PUT a detector config parameter; asserts success."""
    status, body = rest(sim, "GET" if value is None else "PUT", f"detector/api/1.8.0/config/{key}", value)
    assert status == 200, body
    return body


def command(sim, name: str):
    status, body = rest(sim, "PUT", f"detector/api/1.8.0/command/{name}")
    assert status == 200, body
    return body


class Receiver:
    """A PULL socket on the simulator's stream port (connect before arming)."""

    def __init__(self, sim, timeout_s: float = 10.0) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        self.sock.connect(f"tcp://127.0.0.1:{sim.stream_port}")

    def recv(self):
        return self.sock.recv_multipart()

    def until_end(self, v2: bool = False, limit: int = 100000) -> list:
        """Messages up to and including the end message."""
        out = []
        for _ in range(limit):
            m = self.recv()
            out.append(m[0] if v2 else m)
            if (v2 and decode_v2(m[0])["type"] == "end") or (not v2 and b"dseries_end" in m[0][:40]):
                return out
        raise AssertionError("no end message")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


# --- stream V1 -----------------------------------------------------------------------------
def decode_v1_blob(dimage_d: dict, blob: bytes) -> np.ndarray:
    from dectris.compression import decompress

    w, h = dimage_d["shape"]
    dtype = np.dtype(dimage_d["type"]).newbyteorder("<")
    enc = dimage_d["encoding"]
    if enc.startswith("bs") and enc.endswith("-lz4<"):
        assert int(enc[2:enc.index("-")]) == dtype.itemsize * 8
        raw = decompress(blob, "bslz4", elem_size=dtype.itemsize)
    elif enc == "lz4<":
        import lz4.block

        raw = lz4.block.decompress(blob, uncompressed_size=w * h * dtype.itemsize)
    else:
        assert enc == "<", enc
        raw = blob
    assert dimage_d["size"] == len(blob)
    return np.frombuffer(raw, dtype).reshape(h, w)


def parse_v1(messages: list) -> dict:
    """Header parts, frames and end of one V1 series (header single- or multipart)."""
    parts = [p for m in messages for p in m]  # flatten: the header may come split
    head = json.loads(parts[0])
    assert head["htype"] == "dheader-1.0"
    out = {"dheader": head, "frames": [], "images": [], "extra": {}}
    i = 1
    if head["header_detail"] in ("basic", "all"):
        out["config"] = json.loads(parts[1])
        i = 2
    while not parts[i].startswith(b'{"htype":"dimage-1.0"') and b"dseries_end" not in parts[i][:40]:
        meta = json.loads(parts[i])
        w, h = meta["shape"]
        out["extra"][meta["htype"]] = np.frombuffer(parts[i + 1], np.dtype(meta["type"]).newbyteorder("<")) \
            .reshape(h, w) if meta["htype"] != "dcountrate_table-1.0" else np.frombuffer(parts[i + 1], "<f4")
        i += 2
    while b"dseries_end" not in parts[i][:40]:
        dimage, dimage_d = json.loads(parts[i]), json.loads(parts[i + 1])
        assert dimage["htype"] == "dimage-1.0" and dimage_d["htype"] == "dimage_d-1.0"
        import hashlib

        assert dimage["hash"] == hashlib.md5(parts[i + 2]).hexdigest()
        out["images"].append(dimage)
        out["frames"].append(decode_v1_blob(dimage_d, parts[i + 2]))
        dconfig = json.loads(parts[i + 3])
        assert dconfig["htype"] == "dconfig-1.0" and dconfig["stop_time"] > dconfig["start_time"]
        i += 4
    out["end"] = json.loads(parts[i])
    return out


# --- stream V2 -----------------------------------------------------------------------------
TYPED = {64: "<u1", 69: "<u2", 70: "<u4", 85: "<f4"}


def _tag_hook(*args):
    """cbor2 ≤ 5 calls ``hook(decoder, tag)``, cbor2 6 ``hook(tag, immutable)``: take the tag."""
    import cbor2

    tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
    if tag.tag == 56500:
        from dectris.compression import decompress

        algorithm, elem_size, data = tag.value
        return decompress(data, algorithm, elem_size=elem_size)
    if tag.tag in TYPED:
        return np.frombuffer(tag.value, TYPED[tag.tag])
    if tag.tag == 40:
        dims, arr = tag.value
        return arr.reshape(dims)
    return tag


def decode_v2(message: bytes) -> dict:
    import cbor2

    assert message[:3] == b"\xd9\xd9\xf7", "no self-describe tag 55799"
    obj = cbor2.loads(message, tag_hook=_tag_hook)
    obj = obj.value if getattr(obj, "tag", None) == 55799 else obj
    assert next(iter(obj)) == "type"
    return obj


def parse_v2(messages: list) -> dict:
    items = [decode_v2(m) for m in messages]
    out = {"start": items[0] if items[0]["type"] == "start" else None, "end": items[-1]}
    images = [x for x in items if x["type"] == "image"]
    out["images"], out["frames"] = images, [x["data"]["threshold_1"] for x in images]
    return out
