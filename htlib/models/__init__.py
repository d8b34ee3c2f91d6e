"""Models: the target CNN run on given weights, the HyperTransformer, baselines."""
