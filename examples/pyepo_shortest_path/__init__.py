"""PyEPO's shortest-path benchmark: LPGD against SPO+, DBB, DPO, PFYL and two-stage."""
