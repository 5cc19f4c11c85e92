"""PyEPO's shortest-path benchmark, and the harness the PyEPO tasks share: LPGD (and its
variants) against SPO+, DBB, DPO, PFYL, PG, NID and two-stage."""
