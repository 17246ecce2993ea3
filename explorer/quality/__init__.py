"""How good a model is: metrics against the one PCA baseline, probes, features, anomaly scores, compression."""
