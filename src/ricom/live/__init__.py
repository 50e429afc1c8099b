"""Live sessions: acquisitions from a detector connection, reconstructed one after another.

`ricom.live.session` is the detector-independent layer (states, status, acquisitions);
`ricom.live.bookkeeping` checks that frames and scan shape add up; `ricom.live.merlin`
plugs the Merlin data port into it.
"""
