"""Third-party DECTRIS software for interoperability tests: the stream simulator of libertem-dectris.

``libertem_dectris`` (LiberTEM-rs, PyPI ``libertem-dectris``) ships ``DectrisSim``, a
stream-only DECTRIS V1 sender written independently of ricom (Rust).  It has no REST API:
it binds a ZeroMQ PUSH socket and sends, when told to, one series:

- the ``dheader-1.0`` JSON (``header_detail`` ``basic``, series 34) and the detector-config
  JSON as two single-part messages (``nimages`` 1, ``ntrigger`` = frames, ``exte``,
  512×512, ``bit_depth_image`` 16, ``compression`` bslz4);
- per frame the four parts ``dimage-1.0`` (md5 hash), ``dimage_d-1.0`` (``bs16-lz4<``,
  shape [512, 512]), the blob, ``dconfig-1.0``; every pixel of frame *i* reads *i*;
- ``dseries_end-1.0``.

Its ``new_mocked`` data replays nothing from disk (``DectrisSim(uri, filename, …)``
replays a dump in libertem's own binary record format, not a DECTRIS file).  Its blobs
carry **12 zero bytes** where the bitshuffle HDF5 header (total and block size) should be
— a decoder that trusts that header (``dectris.compression.decompress``) gets 0 bytes; one
that knows the frame size from ``dimage_d`` (and the 8192-byte default block) decodes it.

`LiberTEMDectrisSim` starts it on 127.0.0.1 (a free port) and sends a series on a thread.
"""
from __future__ import annotations

import threading

import numpy as np


class LiberTEMDectrisSim:
    """libertem-dectris' ``DectrisSim.new_mocked`` on 127.0.0.1 (see the module docstring).

    Parameters
    ----------
    n_frames : int
        Frames in the series (each 512×512 uint16, every pixel = its frame index).
    dwell_us : int, optional
        Microseconds between frames (None = as fast as possible).

    Attributes
    ----------
    uri, port : str, int
        Where to connect a PULL socket.
    series, detector_shape, dtype
        34, (512, 512), uint16.
    """

    series = 34
    detector_shape = (512, 512)
    dtype = np.dtype("<u2")

    def __init__(self, n_frames: int = 8, dwell_us: int | None = None) -> None:
        import libertem_dectris

        self.n_frames = int(n_frames)
        self._sim = libertem_dectris.DectrisSim.new_mocked("tcp://127.0.0.1", self.n_frames, dwell_us, True)
        self.uri = self._sim.get_uri()
        self.port = int(self.uri.rsplit(":", 1)[1])
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def expected_frames(self) -> np.ndarray:
        """The frames the series carries."""
        values = np.arange(self.n_frames, dtype=np.int64) % 65535
        return np.broadcast_to(values[:, None, None], (self.n_frames, *self.detector_shape)).astype(self.dtype)

    def send(self) -> LiberTEMDectrisSim:
        """Send header, frames and end on a thread (send blocks until a client connects)."""
        def run() -> None:
            try:
                self._sim.send_headers()
                self._sim.send_frames()
                self._sim.send_footer()
            except BaseException as exc:  # reported to the test
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True, name="libertem-dectris-sim")
        self._thread.start()
        return self

    def wait(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "libertem-dectris simulator still sending"
        if self.error is not None:
            raise self.error
