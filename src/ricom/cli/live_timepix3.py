"""ricom live timepix3 (--raw (--listen PORT | --host H --port P) | --asi --host H [--port 8283]) … -o OUTPUT

Reconstruct while a Timepix3 camera server (Serval, or 'ricom simulate timepix3 --raw')
sends its raw packets over TCP, and save each scan when it ends.  --listen PORT waits for
Serval to connect (its raw destination tcp://connect@THIS_PC:PORT); --host/--port
connects to Serval's tcp://listen@HOST:PORT.  Every TCP connection is one scan.  The
scan position of each electron comes from the TDC1 triggers: --sync line (rise starts a
line, fall ends it; the default) or --sync pixel (each rise moves the probe);
--acceptance-ns keeps only electrons arriving that soon after the probe reached a
position (dose control).  --serval URL drives Serval's REST API: it sets the raw
destination (tcp://connect@ this PC's --listen port, or tcp://listen@--host:--port) and
starts a measurement per scan (stopped when the scan ends).  --chip-layout: 'cheetah'
(ASI quad, the default) or 'single'.

--record FILE.h5 writes every electron received (with its arrival time after the probe
reached its position, for --raw) in ricom's event-list layout: 'ricom reconstruct
FILE.h5' gives the same image, and 'ricom reconstruct FILE.h5 --acceptance-ns A' lowers
the dose afterwards.  With --acceptance-ns the recording holds only the electrons kept.

--asi reads ASI's sparse stream instead (the client connects to the camera software,
port 8283): CSR frames in scan order, several scans per acquisition, each saved as it
ends; a scan cancelled mid-way is saved as partial.

--scan-positions FILE: a scan in any order (sparse, random, serpentine): the k-th pixel
trigger (--sync pixel), dwell slot (--sync dwell), column k % SX of line k // SX (--sync
line: the list must fill whole lines) or ASI CSR frame is at the k-th listed position;
each scan is one pass of the list, positions never listed stay empty and are reported.

Exit codes as for 'ricom live merlin': 0 complete; 2 bad settings or no data; 3 a scan
ended early or broke off (the partial result is saved); 130 Ctrl-C (partial saved).
"""
from __future__ import annotations

from ricom.cli.live import add_session_arguments, run_session
from ricom.cli.options import add_reconstruction_options, add_source_options


def add_arguments(p) -> None:
    c = p.add_argument_group("camera server connection")
    add_session_arguments(p, c)
    kind = c.add_mutually_exclusive_group(required=True)
    kind.add_argument("--raw", action="store_true", help="Serval's raw packet stream")
    kind.add_argument("--asi", action="store_true", help="ASI's sparse frame stream (connect to --host, --port 8283)")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--listen", type=int, metavar="PORT", help="wait for the server to connect here")
    c.add_argument("--listen-host", default="0.0.0.0", metavar="IP", help="interface for --listen (default all)")
    where.add_argument("--host", help="connect to the server at this host (with --port)")
    c.add_argument("--port", type=int, metavar="P", help="the server's port")
    c.add_argument("--serval", metavar="URL", help="--raw: set Serval's raw destination and start a measurement "
                   "per scan through its REST API (e.g. http://localhost:8080)")
    add_source_options(p)
    add_reconstruction_options(p)


def run(args) -> int:
    from ricom.cli.options import signal_list
    from ricom.core.errors import Param, SettingsError
    from ricom.live.timepix import Tpx3RawAcquisitions
    from ricom.sources.timepix.serval import ServalClient

    if "tcbf" in signal_list(args.signals):  # refused before connecting, as attaching it would once data arrive
        raise SettingsError("tcBF needs whole patterns and a Timepix3 stream sends single electrons; leave tcbf out "
                            "of ", Param("signals"), " (ssb works on events)")
    if args.asi:
        return _run_asi(args)
    if args.listen is None and (args.host is None or args.port is None):
        raise SettingsError("give --listen PORT, or --host H and --port P")

    serval = ServalClient(args.serval) if args.serval else None
    streams = []

    def make_stream(opts, stop):
        if args.record:  # the recording keeps each electron's arrival time (acceptance after the fact)
            opts = {**opts, "keep_times": True}
        streams.append(Tpx3RawAcquisitions(args.host, args.port, listen_port=args.listen,
                                           listen_host=args.listen_host, stop=stop, timeout=args.timeout,
                                           serval=serval, **opts))
        return streams[-1]

    try:
        if args.listen is not None:
            return run_session(args, make_stream, f"tpx3://listen:{args.listen}", f"listening on port {args.listen}")
        return run_session(args, make_stream, f"tpx3://{args.host}:{args.port}", f"{args.host}:{args.port}")
    finally:
        for stream in streams:
            stream.close_serval()


def _run_asi(args) -> int:
    from ricom.core.errors import SettingsError
    from ricom.live.asi import AsiAcquisitions
    from ricom.sources.timepix.asi import PORT

    if args.host is None or args.listen is not None:
        raise SettingsError("--asi connects to the camera software: give --host H (and --port, default 8283)")
    port = args.port or PORT

    def make_stream(opts, stop):
        return AsiAcquisitions(args.host, port, stop=stop, timeout=args.timeout, **opts)

    return run_session(args, make_stream, f"asi://{args.host}:{port}", f"{args.host}:{port} (ASI)")

