"""The reconstruction engine: per-pattern reduction, reducers (moments, the riCOM image), snapshots, the pipeline.

The riCOM update itself — kernel, direct scatter, block FFT, full rebuild — is in
`ricom.engine.ricom_update`; the compiled loops are in `ricom.engine.compiled`.
"""
