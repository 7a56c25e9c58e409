"""The paper's baselines: ConnComp, AIR and DAIR (SPAIR_SPEC §4)."""
