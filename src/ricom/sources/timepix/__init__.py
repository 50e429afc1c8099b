"""Timepix3 event cameras: .tpx3 packets, PIXet .t3p records, and time → scan-position synchronisation."""
