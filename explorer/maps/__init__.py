"""Latents to maps: the one batched encode, neighbours, projections, mosaics, selections and the cached map pipeline."""
