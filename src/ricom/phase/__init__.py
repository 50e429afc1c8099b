"""Phase-contrast methods beside riCOM on the same chunk stream: tcBF and SSB.

Each method is a reducer (`ricom.engine.reducer.Reducer`) that takes the frame chunks the
riCOM engine already reduces — tilt-corrected bright field (`ricom.phase.tcbf`, signal
``tcbf``: the bright-field pixels' images shifted by their aberration-induced offsets and
summed) and single side-band ptychography (`ricom.phase.ssb`, signal ``ssb``: the
weak-phase reconstruction from the probe's overlap regions) — so one pass over a file or
a live stream gives riCOM, tcBF and SSB together.
"""
