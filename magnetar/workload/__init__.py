"""Sources of interaction events: the synthetic generator and the Online Retail replay."""
