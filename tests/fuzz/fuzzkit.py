"""What every fuzz test shares: byte mutations, fake sockets, and the three checks.

The checks (issue 18, part 6): a parser fed damaged bytes raises nothing but the
project's own errors (`ricom.core.errors.RicomError` subclasses; warnings are allowed),
allocates no more than a bound (`bounded`: the tracemalloc peak of the call, which NumPy
reports its arrays to, against a fixed allowance plus a multiple of the input's size), and
flags every partial result (each test states what a complete result is, and a result
short of it must come with an error or a warning).  A call that does not return within
`HANG_S` seconds dumps every thread's stack and ends the process (no silent hang).
"""
from __future__ import annotations

import faulthandler
import os
import tracemalloc
import warnings
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ricom.core.errors import RicomError

EXAMPLES = int(os.environ.get("RICOM_FUZZ_EXAMPLES", "0")) or None
"""Examples per parser under ``make fuzz`` (None: the CI profile's small default)."""

BASE_BYTES = 96 << 20
"""Allocation allowed to any parse whatever its input (stream buffers, one chunk of decoded frames)."""
PER_INPUT_BYTE = 64
"""…plus this many bytes per input byte (decoded 1-bit raw frames are 8 bytes a byte, events 20)."""
HANG_S = 60.0

INTERESTING = (0, 1, 2, 7, 8, 15, 16, 63, 64, 255, 256, 4095, 4096, 65535, 65536, (1 << 31) - 1, 1 << 31,
               (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
"""Integers that sit on the edges parsers check (and forget to)."""
TEXT_FIELDS = ("", "0", "-1", "1", "2", "6", "12", "24", "64", "256", "512", "1024", "4096", "65536",
               "99999", "1e9", "999999999999", "nan", "U08", "U16", "U32", "R64", "X99", "2x2", "2x2G", "1x1",
               "Nx1", "MQ1", "MQ1A", "HDR", " ", "\0", "abc")
"""Replacements for comma- or tab-separated text fields."""


@dataclass
class Outcome:
    """What one fuzzed call did: its value, the project error it raised, the warnings."""

    value: object = None
    error: RicomError | None = None
    warnings: list = field(default_factory=list)
    peak_bytes: int = 0

    @property
    def flagged(self) -> bool:
        """An error or a warning told the caller that something was wrong."""
        return self.error is not None or bool(self.warnings)


def bounded(call, input_bytes: int, allowance: int = BASE_BYTES, per_byte: int = PER_INPUT_BYTE) -> Outcome:
    """Run ``call()``: project errors are caught, any other exception propagates (a failure);
    the allocation peak must stay under ``allowance + per_byte × input_bytes``."""
    out = Outcome()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out.value = call()
            except RicomError as exc:
                out.error = exc
        out.warnings = [str(w.message) for w in caught]
    finally:
        faulthandler.cancel_dump_traceback_later()
        out.peak_bytes = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    limit = allowance + per_byte * input_bytes
    assert out.peak_bytes <= limit, f"allocated {out.peak_bytes} bytes for {input_bytes} input bytes (limit {limit})"
    if out.error is not None:
        message = str(out.error)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"
    return out


# ---------------------------------------------------------------------------- mutations
@st.composite
def edits(draw, size: int, max_edits: int = 4):
    """A list of byte edits of a ``size``-byte input (see `apply`)."""
    n = draw(st.integers(0, max_edits))
    out = []
    for _ in range(n):
        kind = draw(st.sampled_from(("set", "flip", "int", "insert", "delete", "dup", "field", "truncate")))
        at = draw(st.integers(0, max(0, size - 1)))
        if kind == "set":
            out.append((kind, at, draw(st.binary(min_size=1, max_size=16))))
        elif kind == "flip":
            out.append((kind, at, draw(st.integers(0, 7))))
        elif kind == "int":
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, (1 << 64) - 1))
            out.append((kind, at, (value, draw(st.sampled_from((1, 2, 4, 8))), draw(st.sampled_from(("<", ">"))))))
        elif kind == "insert":
            out.append((kind, at, draw(st.binary(min_size=1, max_size=32))))
        elif kind in ("delete", "dup"):
            out.append((kind, at, draw(st.integers(1, 256))))
        elif kind == "field":
            out.append((kind, at, draw(st.sampled_from(TEXT_FIELDS) | st.integers(-5, 1 << 40).map(str))))
        else:
            out.append((kind, at, None))
    return out


def apply(data: bytes, todo) -> bytes:
    """``data`` with the edits of `edits` applied in order (positions wrap to the current length)."""
    b = bytearray(data)
    for kind, at, arg in todo:
        if not b and kind not in ("insert", "set"):
            continue
        at = at % max(1, len(b))
        if kind == "set":
            b[at:at + len(arg)] = arg
        elif kind == "flip":
            b[at] ^= 1 << arg
        elif kind == "int":
            value, width, order = arg
            b[at:at + width] = (value % (1 << (8 * width))).to_bytes(width, "little" if order == "<" else "big")
        elif kind == "insert":
            b[at:at] = arg
        elif kind == "delete":
            del b[at:at + arg]
        elif kind == "dup":
            b[at:at] = b[at:at + arg]
        elif kind == "field":
            b = _replace_field(b, at, arg.encode("latin-1"))
        else:
            del b[at:]
    return bytes(b)


def _replace_field(b: bytearray, at: int, text: bytes) -> bytearray:
    """Replace the comma/tab/newline-separated field around ``at`` with ``text``."""
    seps = b",\t\n\r"
    start = at
    while start > 0 and b[start - 1] not in seps:
        start -= 1
    end = at
    while end < len(b) and b[end] not in seps:
        end += 1
    return b[:start] + bytearray(text) + b[end:]


def mutants(seeds: list[bytes], max_edits: int = 4):
    """A strategy: one of ``seeds`` with a few edits, or (rarely) plain random bytes."""
    @st.composite
    def build(draw):
        if draw(st.integers(0, 19)) == 0:
            return draw(st.binary(max_size=512))
        seed = draw(st.sampled_from(seeds))
        return apply(seed, draw(edits(len(seed), max_edits)))
    return build()


def reads():
    """How a socket splits the bytes it delivers: a list of read sizes (cycled; one large
    read in each cycle keeps byte-by-byte reading of large inputs out of the time budget)."""
    sizes = st.sampled_from((1, 7, 13, 100, 1500, 4096)) | st.integers(1, 1 << 16)
    return st.lists(sizes, min_size=0, max_size=3).map(lambda s: [*s, 1 << 16])


class FakeSocket:
    """A socket that delivers ``data`` in reads of the given sizes, then the end of the stream."""

    def __init__(self, data: bytes, sizes=(1 << 16,)) -> None:
        self.data, self.pos, self.sizes, self.k = memoryview(data), 0, list(sizes) or [1 << 16], 0

    def settimeout(self, _t) -> None:
        pass

    def recv_into(self, mv) -> int:
        n = min(len(mv), self.sizes[self.k % len(self.sizes)], len(self.data) - self.pos)
        self.k += 1
        mv[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- profiles
settings.register_profile("ricom-ci", deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("ricom-fuzz", deadline=None, derandomize=False, database=None, print_blob=True,
                          suppress_health_check=list(HealthCheck))
PROFILE = "ricom-fuzz" if EXAMPLES else "ricom-ci"
"""``ricom-ci`` (default): a few hundred examples per parser, the same ones every run;
``ricom-fuzz`` (``make fuzz``: ``RICOM_FUZZ_EXAMPLES=N``, ``--hypothesis-seed=0``): N each."""


def fuzz(ci_examples: int):
    """The settings of one fuzz test: ``ci_examples`` in CI, ``RICOM_FUZZ_EXAMPLES`` under ``make fuzz``."""
    return settings(settings.get_profile(PROFILE), max_examples=EXAMPLES or ci_examples)
