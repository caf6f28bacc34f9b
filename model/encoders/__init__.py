"""History encoders: STCA, LONGER and the baselines, behind one interface."""
